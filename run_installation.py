#!/usr/bin/env python3
"""Start the uncanny installation, or run one of its tools (`--help` lists them)."""

import sys

from installation.cli import main  # the package sets the thread policy before torch loads (installation/__init__.py)

if __name__ == "__main__":
    sys.exit(main())
