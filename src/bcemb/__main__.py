"""``python -m bcemb``."""

from bcemb.cli import main

main()
