"""`python -m installation`: the same command line as run_installation.py and the `uncanny` entry point."""

import sys

from .cli import main

sys.exit(main())
