"""``python -m statsyard``: see :mod:`statsyard.cli`."""

from __future__ import annotations

import sys

from statsyard.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
