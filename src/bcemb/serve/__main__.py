"""``python -m bcemb.serve --store DIR``: the same as ``bcemb serve``."""

from bcemb.serve.cli import app

if __name__ == "__main__":
    app()
