"""The installation's log file: RUN_DIR/logs/uncanny.log, rotated at `[logs] log_mb` keeping `log_files` older
ones, so weeks of messages stay within a fixed size and the evidence of why something went wrong survives a
restart. Warnings still go to stderr too (the journal, under systemd), as they did without a log file."""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from .status import LogsConfig, package_version

log = logging.getLogger(__name__)

LOG_FILE = Path("logs") / "uncanny.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def log_file(run_dir: Path, config: LogsConfig) -> Iterator[Path]:
    """For the length of the `with`, the process's log (INFO and up) goes to the rotating file and warnings to
    stderr; a folder where the log cannot be written is a RunFolderError (one line)."""
    from ..engine.engine import RunFolderError

    path = run_dir / LOG_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=int(config.log_mb * 2**20),
                                                       backupCount=config.log_files, encoding="utf-8")
    except OSError as error:
        raise RunFolderError(f"{path}: cannot write the log ({error.strerror or error}); choose a run folder that "
                             "can be written") from None
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    # Once the root logger has a handler Python's last-resort output to stderr stops: keep warnings there.
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.WARNING)
    level = root.level
    root.addHandler(stderr)
    root.addHandler(handler)
    if level > logging.INFO:
        root.setLevel(logging.INFO)
    log.info("started (pid %d, version %s), run folder %s", os.getpid(), package_version(), run_dir)
    try:
        yield path
    finally:
        log.info("stopped (pid %d)", os.getpid())
        root.removeHandler(handler)
        root.removeHandler(stderr)
        root.setLevel(level)
        handler.close()
