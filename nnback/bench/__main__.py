"""``python -m nnback.bench``: the same command as ``nnback bench``."""

from __future__ import annotations

import sys

from ..bench_cli import main

if __name__ == "__main__":
    sys.exit(main())
