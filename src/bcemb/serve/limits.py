"""Request limits of the HTTP service (a light module: the CLI reads them without FastAPI)."""

DEFAULT_MAX_IDS = 10_000
DEFAULT_MAX_BODY_BYTES = 4 << 20  # 4 MiB: 10,000 ids of up to a few hundred bytes each
