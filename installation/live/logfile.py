"""The installation's log file: RUN_DIR/logs/uncanny.log, rotated at `[logs] log_mb` keeping `log_files` older
ones, so weeks of messages stay within a fixed size and the evidence of why something went wrong survives a
restart. Warnings still go to stderr too (the journal, under systemd), as they did without a log file.

A run folder that cannot be written (full, read-only, gone) does not stop the show for its log: the lines that
cannot be written are dropped quietly (no traceback on stderr for each of them), the file is opened again at the
next line, and the warnings still reach stderr."""

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


class _QuietFile(logging.handlers.RotatingFileHandler):
    """The rotating file, opened at the first line (and again after a failure), never making the run folder; a
    line it cannot write is dropped and counted instead of printing logging's traceback."""

    dropped = 0

    def _open(self):  # noqa: ANN202 (logging's own signature)
        Path(self.baseFilename).parent.mkdir(exist_ok=True)  # logs/, not the run folder above it
        return super()._open()

    def handleError(self, record: logging.LogRecord) -> None:
        self.dropped += 1
        if self.stream is not None:
            with contextlib.suppress(OSError):
                self.stream.close()
            self.stream = None


@contextlib.contextmanager
def log_file(run_dir: Path, config: LogsConfig) -> Iterator[Path]:
    """For the length of the `with`, the process's log (INFO and up) goes to the rotating file and warnings to
    stderr (see the module docstring for a folder that cannot be written)."""
    path = run_dir / LOG_FILE
    handler = _QuietFile(path, maxBytes=int(config.log_mb * 2**20), backupCount=config.log_files,
                         encoding="utf-8", delay=True)
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
