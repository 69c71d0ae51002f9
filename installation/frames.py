"""A shared-memory ring carrying generator frames from the engine process to the display, newest last.

One segment holds a header, a metadata record per slot and `slots` fixed-size pixel slots (a frame, or a batch
of frames for the grid view). The single writer fills the slots round robin. Each slot has a version counter used
as a seqlock: odd while the slot is written, even once it is complete. The reader copies the newest complete slot
and keeps the copy only if the version did not change meanwhile; otherwise it tries again with whatever is newest
then, a bounded number of times. There are no locks, so neither side ever waits for the other, old frames are
simply overwritten, and a writer that dies (even mid-write) leaves the last complete frame readable.

The process that creates the channel owns it and unlinks it on close; the other attaches by name. Neither side
registers it with multiprocessing's resource tracker: the tracker dies on SIGHUP to the process group and warns of
"leaked" segments after SIGTERM, while the owner's own cleanup (on every signal it handles) is what matters.
Segments are named `uncanny-<owner pid>-...`, so `sweep_stale()` at start-up removes those whose owner died
without closing (SIGKILL, a crash, a power cut inside a container that keeps /dev/shm).
Ordering relies on the stores of one process becoming visible in program order, as on x86-64 (TSO).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

MAGIC = int.from_bytes(b"UNCANNY1", "little")
_HEADER = np.dtype([("magic", "<u8"), ("slots", "<u8"), ("slot_bytes", "<u8"), ("latest", "<u8")])
_META = np.dtype([("version", "<u8"), ("sequence", "<u8"), ("iteration", "<i8"), ("walk_time", "<f8"),
                  ("show_at", "<f8"),
                  ("time", "<f8"), ("count", "<u8"), ("height", "<u8"), ("width", "<u8")])


@dataclass(frozen=True)
class Frame:
    pixels: np.ndarray  # (count, height, width, 3) uint8, top row first; a private copy
    sequence: int  # 1, 2, 3, ... in publishing order
    iteration: int  # training iteration of the weights that drew it
    walk_time: float  # the walk clock (seconds) the frames show
    show_at: float  # time.time() at which they are meant to be on screen (drawn ahead of it)
    time: float  # time.time() when it was published


def _data_offset(slots: int) -> int:
    return -(-(_HEADER.itemsize + slots * _META.itemsize) // 64) * 64  # pixel slots start on a cache line


PREFIX = "uncanny-"
SHM_DIR = Path("/dev/shm")
_OWNED = re.compile(re.escape(PREFIX) + r"(\d+)-[0-9a-f]+")


@contextlib.contextmanager
def _untracked() -> Iterator[None]:
    """Keep multiprocessing's resource tracker out of it (Python 3.13 has SharedMemory(track=False) for this).

    Before 3.13 creating or attaching registers the segment with the process's tracker, which unlinks it when that
    process exits (cpython issue 82300), pulling it from under the owner, or warns of a leak after a signal."""
    register, unregister = resource_tracker.register, resource_tracker.unregister
    resource_tracker.register = resource_tracker.unregister = lambda *args: None
    try:
        yield
    finally:
        resource_tracker.register, resource_tracker.unregister = register, unregister


def _shared_memory(name: str | None, create: bool = False, size: int = 0) -> SharedMemory:
    if sys.version_info >= (3, 13):
        return SharedMemory(name, create=create, size=size, track=False)
    with _untracked():
        return SharedMemory(name, create=create, size=size)


def process_alive(pid: int) -> bool:
    """Whether a process of that number exists (anybody's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def sweep_stale(folder: Path = SHM_DIR) -> list[str]:
    """Unlink frame channels whose owning process is gone; returns their names."""
    removed = []
    for path in folder.glob(PREFIX + "*") if folder.is_dir() else []:
        match = _OWNED.fullmatch(path.name)
        if match and not process_alive(int(match.group(1))):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                continue  # another user's: theirs to clean up
            removed.append(path.name)
    return removed


class FrameChannel:
    """Newest-frame channel over multiprocessing.shared_memory: `create` in one process, `attach` in the other."""

    def __init__(self, shm: SharedMemory, owner: bool):
        self._shm, self.owner, self.name = shm, owner, shm.name
        self._header = np.ndarray((), _HEADER, shm.buf)
        if int(self._header["magic"]) != MAGIC:
            self._header = None
            shm.close()
            raise ValueError(f"shared memory {shm.name!r} is not a frame channel")
        self.slots, self.slot_bytes = int(self._header["slots"]), int(self._header["slot_bytes"])
        self._meta = np.ndarray(self.slots, _META, shm.buf, _HEADER.itemsize)
        self._version = self._meta["version"]
        self._data = np.ndarray((self.slots, self.slot_bytes), np.uint8, shm.buf, _data_offset(self.slots))
        self.torn_reads = 0  # reads that raced the writer and were retried

    @classmethod
    def create(cls, max_width: int, max_height: int, max_count: int = 1, slots: int = 3,
               name: str | None = None) -> FrameChannel:
        """A new channel for up to max_count frames of max_width x max_height RGB per publish.

        A leftover segment of the same name (its owner died without closing) is replaced.
        """
        if slots < 2:
            raise ValueError("a frame channel needs at least 2 slots, so the newest is never the one being written")
        slot_bytes = max_count * max_height * max_width * 3
        size = _data_offset(slots) + slots * slot_bytes
        name = name or f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            shm = _shared_memory(name, create=True, size=size)
        except FileExistsError:
            stale = _shared_memory(name)
            stale.close()
            with _untracked():
                stale.unlink()
            shm = _shared_memory(name, create=True, size=size)
        header = np.ndarray((), _HEADER, shm.buf)
        header["slots"], header["slot_bytes"], header["latest"] = slots, slot_bytes, 0
        header["magic"] = MAGIC  # last: an attach before this point is refused rather than misread
        del header
        return cls(shm, owner=True)

    @classmethod
    def attach(cls, name: str) -> FrameChannel:
        """Open an existing channel (FileNotFoundError if there is none of that name)."""
        return cls(_shared_memory(name), owner=False)

    def publish(self, frames: np.ndarray, iteration: int = 0, walk_time: float = 0.0, show_at: float = 0.0) -> int:
        """Publish (H, W, 3) or (N, H, W, 3) uint8 frames as the newest; returns their sequence number."""
        pixels = np.asarray(frames)
        if pixels.ndim == 3:
            pixels = pixels[None]
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[3] != 3 or pixels.size == 0 \
                or pixels.nbytes > self.slot_bytes:
            raise ValueError(f"frames {pixels.shape} {pixels.dtype} do not fit a {self.slot_bytes}-byte uint8 slot")
        sequence = int(self._header["latest"]) + 1  # continues the count of a writer that was restarted
        slot = sequence % self.slots
        version = int(self._version[slot])
        writing = version + 1 + (version & 1)  # odd; a writer that died mid-write left it odd already
        self._version[slot] = writing
        record = self._meta[slot]  # a view into the segment
        record["sequence"], record["iteration"], record["walk_time"] = sequence, iteration, walk_time
        record["show_at"] = show_at
        record["time"] = time.time()
        record["count"], record["height"], record["width"] = pixels.shape[:3]
        self._data[slot, :pixels.nbytes] = pixels.reshape(-1)
        self._version[slot] = writing + 1
        self._header["latest"] = sequence
        return sequence

    def read(self, newer_than: int = 0) -> Frame | None:
        """The newest complete frame if its sequence is above `newer_than`, else None. Never waits."""
        for _ in range(self.slots + 1):
            sequence = int(self._header["latest"])
            if sequence <= newer_than:
                return None
            if (frame := self._slot(sequence)) is not None:
                return frame
            # the writer has lapped the ring and is rewriting this slot: take the newer one
        return None

    def read_since(self, newer_than: int = 0) -> list[Frame]:
        """Every complete frame above sequence `newer_than` still in the ring, oldest first (frames drawn ahead
        come in bursts: the display wants them all, not only the newest). Never waits."""
        latest = int(self._header["latest"])
        first = max(newer_than + 1, latest - self.slots + 2)  # the oldest slot may be being rewritten
        return [frame for sequence in range(first, latest + 1) if (frame := self._slot(sequence)) is not None]

    def _slot(self, sequence: int) -> Frame | None:
        """Frame `sequence` if its slot holds it complete, copied out; None if it was overwritten or is torn."""
        slot = sequence % self.slots
        version = int(self._version[slot])
        meta = self._meta[slot:slot + 1].copy()[0]
        count, height, width = int(meta["count"]), int(meta["height"]), int(meta["width"])
        size = count * height * width * 3
        if version & 1 or int(meta["sequence"]) != sequence or not 0 < size <= self.slot_bytes:
            return None
        pixels = self._data[slot, :size].copy()
        if int(self._version[slot]) != version:
            self.torn_reads += 1
            return None
        return Frame(pixels.reshape(count, height, width, 3), sequence, int(meta["iteration"]),
                     float(meta["walk_time"]), float(meta["show_at"]), float(meta["time"]))

    def close(self) -> None:
        """Detach; the owner also unlinks the segment (readers that still map it keep their last frame)."""
        if self._shm is None:
            return
        self._header = self._meta = self._version = self._data = None  # views must go before the mapping
        self._shm.close()
        if self.owner:
            with _untracked():
                self._shm.unlink()
        self._shm = None

    def __enter__(self) -> FrameChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
