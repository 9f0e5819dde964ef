"""bcemb: backward compatible embeddings (Hu et al., KDD 2022)."""

from bcemb.version import __version__

__all__ = ["__version__"]
