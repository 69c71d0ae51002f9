#!/usr/bin/env python3
"""Start the uncanny installation, or run one of its tools (`--help` lists them)."""

import sys

from installation.signals import StopSignals

if __name__ == "__main__":
    # First of all: the command line and torch take seconds to import, and a stop signal meanwhile must end the
    # start-up with one line, not a traceback or a silent death (cli.main)
    stop = StopSignals().__enter__()
    from installation.cli import main  # the package set the thread policy before torch loads (installation/__init__)

    sys.exit(main(stop=stop))
