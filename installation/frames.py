"""A shared-memory ring carrying generator frames from the engine process to the display, newest last.

One segment holds a header, `slots` publish records and `slots` fixed-size frame slots. A publish (one moment: one
walk's frame, or the N x N grid's frames) takes as many consecutive frame slots as it has frames, so one ring serves
both views and the grid can be switched on live: a single walk gets every slot to draw far ahead, the grid fewer
moments of nine frames. The single writer lays publishes round the ring (skipping a tail too short for the next one);
before it overwrites frame slots it marks the records of the publishes that held them (always the oldest) invalid.
Each record has a version counter used as a seqlock: odd while written or once invalid, even while complete. The
reader copies a publish and keeps the copy only if its version did not change meanwhile; otherwise it tries again
with whatever is newest then, a bounded number of times. There are no locks, so neither side ever waits for the
other, old frames are simply overwritten, and a writer that dies (even mid-write) leaves the last complete frame
readable; the next writer goes on from the header (the newest sequence and where the next publish goes).

The segment's pages are reserved when it is created (posix_fallocate on tmpfs): a /dev/shm that fills up later can
then never kill a process writing its frames with SIGBUS, and a /dev/shm too small is refused at once, in one line
naming shared memory, the size needed and the fix (`ring_slots` sizes the ring from what is shown).

The process that creates the channel owns it and unlinks it on close; the other attaches by name. Neither side
registers it with multiprocessing's resource tracker: the tracker dies on SIGHUP to the process group and warns of
"leaked" segments after SIGTERM, while the owner's own cleanup (on every signal it handles) is what matters.
Segments are named `uncanny-<owner pid>-...`, so `sweep_stale()` at start-up removes those whose owner died
without closing (SIGKILL, a crash, a power cut inside a container that keeps /dev/shm).
Ordering relies on the stores of one process becoming visible in program order, as on x86-64 (TSO).
"""

from __future__ import annotations

import contextlib
import errno
import math
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

from .messages import size_text

MAGIC = int.from_bytes(b"UNCANNY2", "little")
_HEADER = np.dtype([("magic", "<u8"), ("slots", "<u8"), ("slot_bytes", "<u8"), ("latest", "<u8"), ("oldest", "<u8"),
                    ("next", "<u8")])
_RECORD = np.dtype([("version", "<u8"), ("sequence", "<u8"), ("iteration", "<i8"), ("generation", "<i8"),
                    ("walk_time", "<f8"), ("show_at", "<f8"), ("time", "<f8"), ("count", "<u8"), ("height", "<u8"),
                    ("width", "<u8"), ("first", "<u8")])

RING_SECONDS = 1.0  # frames drawn ahead that the ring holds for one walk, at the output rate
FRAME_MEMORY = 64 * 2**20  # bytes the N x N view may take to be drawn ahead as far (it gets less at large sizes) ...
MAX_FRAME_MEMORY = 256 * 2**20  # ... and the ring at the most, though never less than three of the view's moments


@dataclass(frozen=True)
class Frame:
    pixels: np.ndarray  # (count, height, width, 3) uint8, top row first; a private copy
    sequence: int  # 1, 2, 3, ... in publishing order
    iteration: int  # training iteration of the weights that drew it
    walk_time: float  # the walk clock (seconds) the frames show
    show_at: float  # time.time() at which they are meant to be on screen (drawn ahead of it)
    time: float  # time.time() when it was published
    generation: int = 0  # grows when the weights jump (rewind, reset, rollback, a new engine): older ones are stale


def _data_offset(slots: int) -> int:
    return -(-(_HEADER.itemsize + slots * _RECORD.itemsize) // 64) * 64  # frame slots start on a cache line


def ring_slots(resolution: int, grid: int, fps: float) -> int:
    """Frame slots for frames of `resolution` px drawn at `fps`: RING_SECONDS ahead for one walk; for the `grid` x
    `grid` view as far within FRAME_MEMORY, and three of its moments at least (one shown, one written, one ahead);
    within MAX_FRAME_MEMORY where that leaves three of the view's moments.

    At 64 px that is 1 s ahead for both views (3.4 MB); a 1024 px walk gets 32 slots (96 MB), 1 s at 30 fps where a
    GPU's training step takes tens of milliseconds, and its 3 x 3 view three moments."""
    frame, view = resolution**2 * 3, grid**2
    moments = math.ceil(RING_SECONDS * fps) + 2  # ahead, plus the one being read and the one being written
    slots = max(moments, min(moments * view, FRAME_MEMORY // frame))
    return max(min(slots, MAX_FRAME_MEMORY // frame), 3 * view)


def ring_bytes(width: int, height: int, slots: int) -> int:
    """The shared memory a ring of `slots` frames of width x height takes."""
    return _data_offset(slots) + slots * width * height * 3


PREFIX = "uncanny-"
SHM_DIR = Path("/dev/shm")
_OWNED = re.compile(re.escape(PREFIX) + r"(\d+)-[0-9a-f]+")


class SharedMemoryError(OSError):
    """/dev/shm cannot hold the frames; one line naming shared memory, the size needed and the fix."""


def shared_memory_free(folder: Path = SHM_DIR) -> int | None:
    """Bytes free in /dev/shm, or None where shared memory is not a file system (not Linux-like)."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def shared_memory_message(need: int, free: int | None) -> str:
    """The one line for a /dev/shm too small for the frames: the size needed and the fix."""
    have = f"has {size_text(free)} free" if free is not None else "is full"
    enough = -(-need // 2**26) * 64 + 64  # MB: the need rounded up to 64 MB, plus room for others
    return (f"the frames need {size_text(need)} of shared memory but /dev/shm {have}; enlarge /dev/shm (Docker: "
            f"--shm-size={enough}m) or lower [render] max_fps or [walk] grid")


def check_shared_memory(need: int, folder: Path = SHM_DIR) -> None:
    """SharedMemoryError when /dev/shm has less than `need` bytes free (containers often keep it small: Docker
    gives 64 MB)."""
    free = shared_memory_free(folder)
    if free is not None and need > free:
        raise SharedMemoryError(errno.ENOSPC, shared_memory_message(need, free))


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


def _unlink(shm: SharedMemory) -> None:
    with _untracked():
        shm.unlink()


def _reserve(shm: SharedMemory, size: int) -> None:
    """Allocate every page of a new segment now (tmpfs hands pages out on first touch, and a touch that finds
    /dev/shm full is a SIGBUS); SharedMemoryError when it does not fit."""
    path = SHM_DIR / shm.name.lstrip("/")
    if not hasattr(os, "posix_fallocate") or not path.exists():
        return  # shared memory is not a tmpfs folder here
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    except OSError as error:
        shm.close()
        _unlink(shm)
        if error.errno in (errno.ENOSPC, errno.ENOMEM):
            raise SharedMemoryError(errno.ENOSPC, shared_memory_message(size, shared_memory_free())) from None
        raise


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
        self._records = np.ndarray(self.slots, _RECORD, shm.buf, _HEADER.itemsize)
        self._version = self._records["version"]
        self._data = np.ndarray((self.slots, self.slot_bytes), np.uint8, shm.buf, _data_offset(self.slots))
        self.torn_reads = 0  # reads that raced the writer and were retried

    @classmethod
    def create(cls, max_width: int, max_height: int, slots: int = 3, name: str | None = None) -> FrameChannel:
        """A new channel of `slots` frames of up to max_width x max_height RGB; a publish of N frames takes N of
        them, and at most half of them (the newest complete publish must outlast the writing of the next).

        A leftover segment of the same name (its owner died without closing) is replaced. SharedMemoryError when
        /dev/shm cannot hold it."""
        if slots < 2:
            raise ValueError("a frame channel needs at least 2 slots, so the newest is never the one being written")
        slot_bytes = max_height * max_width * 3
        size = ring_bytes(max_width, max_height, slots)
        check_shared_memory(size)
        name = name or f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            shm = _shared_memory(name, create=True, size=size)
        except FileExistsError:
            stale = _shared_memory(name)
            stale.close()
            _unlink(stale)
            shm = _shared_memory(name, create=True, size=size)
        _reserve(shm, size)
        header = np.ndarray((), _HEADER, shm.buf)
        header["slots"], header["slot_bytes"] = slots, slot_bytes
        header["latest"] = header["oldest"] = header["next"] = 0
        header["magic"] = MAGIC  # last: an attach before this point is refused rather than misread
        del header
        return cls(shm, owner=True)

    @classmethod
    def attach(cls, name: str) -> FrameChannel:
        """Open an existing channel (FileNotFoundError if there is none of that name)."""
        return cls(_shared_memory(name), owner=False)

    def capacity(self, count: int) -> int:
        """Publishes of `count` frames the ring holds at once."""
        return self.slots // max(count, 1)

    @property
    def generation(self) -> int:
        """The weights generation of the newest complete publish (0 before any): a restarted writer goes on above
        it, so the reader drops what the writer before it had drawn ahead."""
        latest = int(self._header["latest"])
        return int(self._records[latest % self.slots]["generation"]) if latest else 0

    def publish(self, frames: np.ndarray, iteration: int = 0, walk_time: float = 0.0, show_at: float = 0.0,
                generation: int = 0) -> int:
        """Publish (H, W, 3) or (N, H, W, 3) uint8 frames as the newest; returns their sequence number."""
        pixels = np.asarray(frames)
        if pixels.ndim == 3:
            pixels = pixels[None]
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[3] != 3 or pixels.size == 0 \
                or pixels[0].nbytes > self.slot_bytes or len(pixels) > self.slots // 2:
            raise ValueError(f"frames {pixels.shape} {pixels.dtype} do not fit {self.slots // 2} slots of "
                             f"{self.slot_bytes} bytes (uint8)")
        count = len(pixels)
        header = self._header
        sequence = int(header["latest"]) + 1  # continues the count of a writer that was restarted
        start = int(header["next"])
        first = 0 if start + count > self.slots else start  # a tail too short for this publish is skipped
        taken = [(first, first + count)] + ([(start, self.slots)] if first != start else [])
        oldest = max(int(header["oldest"]), sequence - self.slots + 1, 1)
        while oldest < sequence:  # the oldest publishes hold the slots taken now: mark them invalid first
            record = self._records[oldest % self.slots]
            held = int(record["first"]), int(record["first"]) + int(record["count"])
            if int(record["sequence"]) == oldest and not any(a < held[1] and held[0] < b for a, b in taken):
                break
            version = int(self._version[oldest % self.slots])
            if int(record["sequence"]) == oldest and not version & 1:
                self._version[oldest % self.slots] = version + 1
            oldest += 1
        index = sequence % self.slots
        version = int(self._version[index])
        writing = version + 1 + (version & 1)  # odd; a writer that died mid-write left it odd already
        self._version[index] = writing
        record = self._records[index]  # a view into the segment
        record["sequence"], record["iteration"], record["generation"] = sequence, iteration, generation
        record["walk_time"], record["show_at"], record["time"] = walk_time, show_at, time.time()
        record["count"], record["height"], record["width"], record["first"] = *pixels.shape[:3], first
        self._data[first:first + count, :pixels[0].nbytes] = pixels.reshape(count, -1)
        self._version[index] = writing + 1
        header["oldest"], header["next"] = oldest, first + count
        header["latest"] = sequence  # last: a writer that dies before it leaves this publish unannounced
        return sequence

    def read(self, newer_than: int = 0) -> Frame | None:
        """The newest complete frame if its sequence is above `newer_than`, else None. Never waits."""
        for _ in range(self.slots + 1):
            sequence = int(self._header["latest"])
            if sequence <= newer_than:
                return None
            if (frame := self._publish(sequence)) is not None:
                return frame
            # the writer has lapped the ring and is rewriting this publish's slots: take the newer one
        return None

    def read_since(self, newer_than: int = 0) -> list[Frame]:
        """Every complete frame above sequence `newer_than` still in the ring, oldest first (frames drawn ahead
        come in bursts: the display wants them all, not only the newest). Never waits."""
        latest = int(self._header["latest"])
        first = max(newer_than + 1, int(self._header["oldest"]), latest - self.slots + 1)
        return [frame for sequence in range(first, latest + 1) if (frame := self._publish(sequence)) is not None]

    def _publish(self, sequence: int) -> Frame | None:
        """Publish `sequence` if the ring holds it complete, copied out; None if it was overwritten or is torn."""
        index = sequence % self.slots
        version = int(self._version[index])
        meta = self._records[index:index + 1].copy()[0]
        count, height, width, first = (int(meta[k]) for k in ("count", "height", "width", "first"))
        size = height * width * 3
        if version & 1 or int(meta["sequence"]) != sequence or not 0 < size <= self.slot_bytes \
                or not 0 < count <= self.slots - first:
            return None
        pixels = self._data[first:first + count, :size].copy()
        if int(self._version[index]) != version:
            self.torn_reads += 1
            return None
        return Frame(pixels.reshape(count, height, width, 3), sequence, int(meta["iteration"]),
                     float(meta["walk_time"]), float(meta["show_at"]), float(meta["time"]), int(meta["generation"]))

    def close(self) -> None:
        """Detach; the owner also unlinks the segment (readers that still map it keep their last frame)."""
        if self._shm is None:
            return
        self._header = self._records = self._version = self._data = None  # views must go before the mapping
        self._shm.close()
        if self.owner:
            _unlink(self._shm)
        self._shm = None

    def __enter__(self) -> FrameChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
