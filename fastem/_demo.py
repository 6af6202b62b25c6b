"""The Old Faithful demo, kept for ``python -m fastem._demo``; it is ``fastem demo`` (see fastem/cli.py)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main(["demo", *sys.argv[1:]]))
