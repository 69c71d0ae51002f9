#!/usr/bin/env python3
"""Start the uncanny installation, or run one of its tools (`--help` lists them)."""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: avoid OpenMP spin stalls

from installation.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
