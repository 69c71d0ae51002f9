"""Files that survive a kill -9 or a power cut: atomic writes (the old file or the new one, never half of one) and
JSON-lines logs whose cut-off last line is dropped before new lines are appended."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

# What writers leave free on a disk: snapshots and logs wait before it is this close to full (the rest of the machine,
# and the finishing of a video, still need room) ...
MIN_FREE_BYTES = 32 * 2**20
# ... and recordings, the large writers, stop well before that, so the run's own small files go on after them
RECORDING_FREE_BYTES = 2 * MIN_FREE_BYTES


def write_problem(folder: Path) -> OSError | None:
    """Why files cannot be written in `folder` now (read-only, no permission, a file in the way), or None. A folder
    that does not exist yet is judged by the nearest one above it, where it would be made. Touches nothing."""
    probe = Path(folder)
    try:
        while not probe.is_dir() and not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not probe.is_dir():
            return NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe))
        if os.access(probe, os.W_OK | os.X_OK):
            return None
        code = errno.EROFS if os.statvfs(probe).f_flag & os.ST_RDONLY else errno.EACCES
    except OSError as error:
        return error
    return OSError(code, os.strerror(code), str(probe))


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any], durable: bool = True, make_folder: bool = True
                 ) -> None:
    """Write through `write(file)` into a temporary file beside `path`, fsync it, then rename it into place.
    `durable=False` skips the fsyncs: still whole or not at all, but a power cut may leave the old file (for files
    rewritten every few seconds from the render loop, where an fsync on a slow disk would stall the picture).
    `make_folder=False`: a missing folder is FileNotFoundError, not made again (a run folder deleted while the show
    runs is remade by its RunFolder, run.json first)."""
    path = Path(path)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the result should read like any other file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _KeptOSError:
    """The file torch.save writes through, keeping the first OSError: torch turns a failed write into a RuntimeError
    of its own ("unexpected pos"), which hides the reason (no space left, a read-only disk)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.error = file, None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.file.flush()


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through atomic_write; a write the disk refused raises its OSError."""
    import torch  # here, not at the top: the fast commands use this module without loading torch

    def save(file: IO[bytes]) -> None:
        kept = _KeptOSError(file)
        try:
            torch.save(obj, kept)
        except RuntimeError:
            if kept.error is not None:
                raise kept.error from None
            raise

    atomic_write(path, save)


def atomic_write_bytes(path: Path, data: bytes, make_folder: bool = True) -> None:
    atomic_write(path, lambda f: f.write(data), make_folder=make_folder)


def drop_torn_line(path: Path) -> bool:
    """Cut a JSON-lines file back to its last complete line (a kill or power cut can leave half a line, which the
    next append would join); True when something was dropped."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return False
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return False
            keep = 0
            for start in range(size, 0, -65536):  # search backwards for the last newline
                f.seek(max(0, start - 65536))
                chunk = f.read(start - max(0, start - 65536))
                if (i := chunk.rfind(b"\n")) >= 0:
                    keep = max(0, start - 65536) + i + 1
                    break
            f.truncate(keep)
            return True
    except FileNotFoundError:
        return False


def last_json_line(path: Path) -> dict[str, Any] | None:
    """The last complete line of a JSON-lines file as a dict, or None (no file, empty, unreadable line)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 65536))
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    try:
        line = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return line if isinstance(line, dict) else None
