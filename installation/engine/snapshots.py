"""Snapshots of one journey: the newest few (and iteration 0) in memory, a thinned history on disk.

A snapshot is a rewind point: G's weights and the live settings. Only the newest also carries the optimiser's Adam
moments, twice G's size, which only a resume needs; a rewind point restored later starts Adam afresh. That keeps a
1024 px StyleGAN1 rewind point at about 105 MB instead of 315 MB, in memory and on disk.

Files: `snapshots/itNNNNNNNN.pt` is an uncanny checkpoint without a discriminator (so `load_gan`, `inspect` and
`sample` read it) plus a `journey` entry with the iteration, branch and live settings. `snapshots/optimizer.pt`
holds the moments of the newest snapshot written, tagged with its iteration and branch; a resume uses them only
from that very snapshot. (Files of earlier releases carry their moments inside and are read as they are.)

Capture (`capture`) never waits on the device: on CUDA the copies are queued as asynchronous copies into pinned
host memory behind the step that made the weights (the next step runs after them on the same stream), and the
first reader of the host copies waits for them (`Snapshot.wait`); on the CPU they are clones.

Writing: one background thread writes and deletes in order (`_Writer`), each file through an fsynced atomic write,
so a kill -9 or power cut leaves either the complete file or none (plus a hidden temporary file that the next start
removes). A disk slower than the snapshots never holds training up: at most PENDING_WRITES wait, and a newer one
pushes the oldest waiting one out ("skipped": it stays a rewind point while it is in memory). A folder that cannot
be written (full, read-only) suspends writing with one report while training goes on from memory; each new snapshot
tries again, and the first one written resumes it. A folder removed is made again at the next write. In both cases
the snapshots in memory that the disk lost (iteration 0 among them) are written again, so the journey goes on from
where it got to. `take_reports()` tells the engine what happened; a snapshot counts as written once its file is
durable.

Retention (`retained`): iteration 0 and the newest are always kept; the `keep_recent` snapshots behind the newest
are kept at full density; further back the spacing doubles with every doubling of age; and if that still does
not fit the disk budget, the inner snapshot whose neighbours are closest together goes first.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..messages import first_line, quiet_torch_load
from ..models.loader import OWN_FORMAT_KEY, OWN_FORMAT_VERSION
from ..storage import atomic_torch_save

FILE_NAME = re.compile(r"it(\d{8})\.pt")
OPTIMIZER_FILE = "optimizer.pt"
TEMP_NAME = re.compile(r"\.(it\d{8}|optimizer)\.pt\..*\.tmp")
PENDING_WRITES = 2  # snapshot files waiting for the disk, at most; a newer one pushes the oldest out
HOUR = 3600.0


class SnapshotError(Exception):
    """A snapshot file cannot be read back; one line."""


@dataclass
class Snapshot:
    iteration: int
    branch: int
    generator: dict[str, Tensor]  # full state_dict, host copies
    optimizer: dict[str, Any] | None  # Adam state_dict (host copies): the newest snapshot's only
    settings: dict[str, Any]  # lr, loss, batch when it was taken
    ready: Any = None  # the CUDA event the host copies are complete at; None once they are

    def wait(self) -> Snapshot:
        """The snapshot with its host copies complete (waits for the device where they are still under way)."""
        if (ready := self.ready) is not None:
            ready.synchronize()
            self.ready = None
        return self

    def nbytes(self) -> int:
        return _tree_bytes(self.generator) + _tree_bytes(self.optimizer)


def capture(tree: Any) -> tuple[Any, Any]:
    """Host copies of every tensor in nested dicts/lists/tuples and the CUDA event they are complete at (None when
    nothing came from a GPU). CUDA tensors go into pinned memory by copies queued on the current stream, so the caller
    does not wait; CPU tensors are cloned (never shared storage: Adam updates its state in place)."""
    devices: list[torch.device] = []

    def copy(obj: Any) -> Any:
        if isinstance(obj, Tensor):
            obj = obj.detach()
            if obj.device.type != "cuda":
                return obj.clone()
            host = torch.empty(obj.shape, dtype=obj.dtype, pin_memory=True)
            host.copy_(obj, non_blocking=True)
            devices.append(obj.device)
            return host
        if isinstance(obj, dict):
            return {k: copy(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(copy(v) for v in obj)
        return obj

    copied = copy(tree)
    if not devices:
        return copied, None
    ready = torch.cuda.Event()
    ready.record(torch.cuda.current_stream(devices[0]))
    return copied, ready


def clone_tree(obj: Any) -> Any:
    """CPU copies of every tensor in nested dicts/lists (never shared storage: Adam updates its state in place)."""
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: clone_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_tree(v) for v in obj)
    return obj


def _tree_bytes(obj: Any) -> int:
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tree_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tree_bytes(v) for v in obj)
    return 0


def retained(iterations: list[int] | set[int], every: int, keep_recent: int, max_count: int) -> set[int]:
    """Which snapshot iterations to keep (see the module docstring). Only ever shrinks as the newest advances."""
    if not iterations:
        return set()
    newest = max(iterations)
    keep = set()
    for it in iterations:
        age = (newest - it) // every  # in snapshot intervals
        if it == 0 or age < keep_recent:
            keep.add(it)
        elif it % every == 0:
            level = (age // keep_recent).bit_length()  # 1 for ages [k, 2k), 2 for [2k, 4k), ...
            if (it // every) % (1 << level) == 0:
                keep.add(it)
    ordered = sorted(keep)
    while len(ordered) > max(max_count, 2):
        inner = min(range(1, len(ordered) - 1), key=lambda j: ordered[j + 1] - ordered[j - 1])
        del ordered[inner]
    return set(ordered)


@dataclass(frozen=True)
class Report:
    """What became of a snapshot on disk (`SnapshotStore.take_reports`).

    kind: "written" (durable: `nbytes`, `seconds`), "skipped" (pushed out by newer ones while the disk was behind),
    "suspended" (the folder cannot be written: `message`), "resumed" (written again after a suspension or after the
    folder was made again: `message`), "error" (a write or deletion failed for another reason: `message`)."""

    kind: str
    iteration: int | None = None
    branch: int | None = None
    message: str | None = None
    nbytes: int = 0
    seconds: float = 0.0


@dataclass(eq=False)
class _Job:
    kind: str  # "write" (a snapshot file), "optimizer" (optimizer.pt) or "delete"
    iteration: int
    branch: int
    path: Path
    payload: Callable[[], dict[str, Any]] | None = None  # built on the writer thread, once the copies are complete
    size: int = 0  # bytes it will take, about


class _Writer:
    """One background thread doing the snapshot writes and deletions in order (see the module docstring)."""

    def __init__(self) -> None:
        self._jobs: deque[_Job] = deque()
        self._changed = threading.Condition()
        self._busy = self._closing = False
        self._reports: list[Report] = []
        self._written: deque[tuple[float, int]] = deque()  # (time, bytes) of the writes of the last hour
        self._undeleted: list[Path] = []  # deletions a suspension left to do
        self.suspended: str | None = None  # why writing is suspended
        self.last_write_seconds = 0.0
        self._thread = threading.Thread(target=self._loop, name="snapshot-writer", daemon=True)
        self._thread.start()

    def put(self, job: _Job) -> list[_Job]:
        """Queue a job; returns the waiting snapshot writes it pushed out (the disk is behind), oldest first."""
        with self._changed:
            if job.kind == "optimizer":  # only the newest moments matter
                self._remove(lambda waiting: waiting.kind == "optimizer")
            pushed_out: list[_Job] = []
            if job.kind == "write":
                while len(waiting := [j for j in self._jobs if j.kind == "write"]) >= PENDING_WRITES:
                    oldest = waiting[0]
                    self._remove(lambda j: j is oldest or (j.kind == "optimizer" and j.iteration == oldest.iteration))
                    pushed_out.append(oldest)
            self._jobs.append(job)
            self._changed.notify_all()
        return pushed_out

    def cancel(self, iteration: int) -> None:
        """Forget the waiting writes of one iteration (a rewind abandoned it)."""
        with self._changed:
            self._remove(lambda j: j.kind != "delete" and j.iteration == iteration)

    def _remove(self, match: Callable[[_Job], bool]) -> None:
        self._jobs = deque(j for j in self._jobs if not match(j))

    def bytes_last_hour(self) -> int:
        with self._changed:
            while self._written and self._written[0][0] < time.monotonic() - HOUR:
                self._written.popleft()
            return sum(size for _, size in self._written)

    def flush(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: not self._jobs and not self._busy)

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()

    def take_reports(self) -> list[Report]:
        with self._changed:
            reports, self._reports = self._reports, []
        return reports

    def _report(self, *args: Any, **fields: Any) -> None:
        with self._changed:
            self._reports.append(Report(*args, **fields))

    def _loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._jobs or self._closing)
                if not self._jobs:
                    return  # closing, and everything queued is done
                job, self._busy = self._jobs.popleft(), True
            try:
                self._do(job)
            except Exception as error:  # a dead writer thread would hang every later flush
                self._report("error", job.iteration, job.branch,
                             f"snapshot {job.iteration}: could not {job.kind} {job.path}: {first_line(error)}")
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def _do(self, job: _Job) -> None:
        folder = job.path.parent
        if job.kind == "delete":
            try:
                job.path.unlink(missing_ok=True)
            except OSError as error:
                self._undeleted.append(job.path)
                self._suspend(folder, error)
            return
        if self.suspended is not None and not _room_for(folder, job.size):
            self._report("failed", job.iteration, job.branch)  # the suspension was said once
            return
        recreated = not folder.is_dir()
        start = time.perf_counter()
        try:
            atomic_torch_save(job.payload(), job.path)  # mkdir (a folder removed is made again), fsync, rename
        except OSError as error:
            self._report("failed", job.iteration, job.branch)
            self._suspend(folder, error)
            return
        seconds = time.perf_counter() - start
        try:
            size = job.path.stat().st_size
        except OSError:
            size = job.size
        with self._changed:
            self._written.append((time.monotonic(), size))
        if self.suspended is not None or recreated:
            why = "made again" if recreated and self.suspended is None else "writable again"
            self.suspended = None
            self._report("resumed", job.iteration, job.branch, f"snapshots are written again to {folder} (the folder "
                                                               f"is {why})")
            for path in self._undeleted:
                path.unlink(missing_ok=True)
            self._undeleted.clear()
        if job.kind == "write":
            self.last_write_seconds = seconds
            self._report("written", job.iteration, job.branch, nbytes=size, seconds=seconds)

    def _suspend(self, folder: Path, error: OSError) -> None:
        if self.suspended is None:
            reason = error.strerror or first_line(error)
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                fix = "free some space on its disk"
            elif error.errno == errno.EROFS:
                fix = "make its disk writable again"
            else:
                fix = "check the disk and the folder"
            self.suspended = (f"snapshots cannot be written to {folder} ({reason}): training goes on from memory, and "
                              f"writing resumes by itself when the folder can be written again; {fix}")
            self._report("suspended", message=self.suspended)


def _room_for(folder: Path, size: int) -> bool:
    """Whether a suspended folder looks writable again: it exists or can be made, and has room for `size` bytes."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return os.access(folder, os.W_OK) and shutil.disk_usage(folder).free > size
    except OSError:
        return False


class SnapshotStore:
    """The snapshots of one run folder. `header` holds the checkpoint facts every file repeats."""

    def __init__(self, folder: Path, header: dict[str, Any], every: int, keep_recent: int, memory: int,
                 budget_bytes: float) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.header = header
        self.every, self.keep_recent, self.memory, self.budget_bytes = every, keep_recent, memory, budget_bytes
        self._memory: dict[int, Snapshot] = {}
        self._disk: set[int] = set()  # on disk, or queued to be
        self._queued: dict[int, int] = {}  # iteration -> branch of the writes not yet reported
        self._skipped: list[Report] = []
        for path in self.folder.iterdir():
            if TEMP_NAME.fullmatch(path.name):
                path.unlink(missing_ok=True)  # a write that a kill interrupted; the rename never happened
            elif m := FILE_NAME.fullmatch(path.name):
                self._disk.add(int(m.group(1)))
        self._writer = _Writer()
        self.last_capture_seconds = 0.0
        self.saved: int | None = max(self._disk, default=None)  # the newest snapshot durable on disk

    def path(self, iteration: int) -> Path:
        return self.folder / f"it{iteration:08d}.pt"

    def iterations(self) -> list[int]:
        return sorted(self._disk | set(self._memory))

    def on_disk(self) -> list[int]:
        return sorted(self._disk)

    def in_memory(self) -> list[int]:
        return sorted(self._memory)

    def held(self) -> dict[int, Snapshot]:
        """The snapshots held in memory (iteration 0 and the newest), their host copies perhaps still under way
        (Snapshot.wait)."""
        return dict(self._memory)

    @property
    def last_write_seconds(self) -> float:
        return self._writer.last_write_seconds

    @property
    def suspended(self) -> str | None:
        """Why snapshots are not being written now (None while they are)."""
        return self._writer.suspended

    def bytes_last_hour(self) -> int:
        """Bytes of snapshot files (and optimizer.pt) written in the last hour."""
        return self._writer.bytes_last_hour()

    def add(self, snapshot: Snapshot) -> None:
        """Keep a new snapshot (the newest: it keeps its moments, the older ones in memory drop theirs) and queue it
        for the disk."""
        it = snapshot.iteration
        for older in self._memory.values():
            older.optimizer = None
        self._memory[it] = snapshot
        for old in sorted(self._memory)[1:-(self.memory - 1)]:  # keep the oldest (iteration 0) and the newest
            del self._memory[old]
        self._queue(snapshot)
        room = self.budget_bytes - _tree_bytes(snapshot.optimizer)  # optimizer.pt lies beside the rewind points
        keep = retained(self._disk, self.every, self.keep_recent, int(room // max(_tree_bytes(snapshot.generator), 1)))
        for old in sorted(self._disk - keep):
            self._forget(old)
        self._disk = keep

    def _queue(self, snapshot: Snapshot) -> None:
        it, branch, optimizer = snapshot.iteration, snapshot.branch, snapshot.optimizer
        self._disk.add(it)
        self._queued[it] = branch
        pushed_out = self._writer.put(_Job("write", it, branch, self.path(it), lambda: self._payload(snapshot.wait()),
                                           _tree_bytes(snapshot.generator)))
        if optimizer is not None:
            def moments() -> dict[str, Any]:
                snapshot.wait()
                return {"iteration": it, "branch": branch, "optimizer": optimizer}

            self._writer.put(_Job("optimizer", it, branch, self.folder / OPTIMIZER_FILE, moments,
                                  _tree_bytes(optimizer)))
        for job in pushed_out:
            self._disk.discard(job.iteration)
            self._queued.pop(job.iteration, None)
            self._skipped.append(Report("skipped", job.iteration, job.branch))

    def load(self, iteration: int) -> Snapshot:
        if iteration in self._memory:
            return self._memory[iteration].wait()
        if iteration in self._queued:
            self._writer.flush()
        snapshot = self.read(self.path(iteration))
        if iteration == max(self._disk, default=None) and snapshot.optimizer is None:
            snapshot.optimizer = self._optimizer_of(snapshot)
        if snapshot.iteration == 0:
            self._memory[0] = snapshot  # reset must stay instant
        return snapshot

    def _optimizer_of(self, snapshot: Snapshot) -> dict[str, Any] | None:
        """The moments optimizer.pt holds for exactly this snapshot, else None (Adam starts afresh)."""
        try:
            with quiet_torch_load():
                saved = torch.load(self.folder / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
            if (saved["iteration"], saved["branch"]) == (snapshot.iteration, snapshot.branch):
                return saved["optimizer"]
        except Exception:  # missing, of another snapshot, unreadable: a resume with fresh moments is still right
            pass
        return None

    def discard(self, iteration: int) -> None:
        """Forget one snapshot (unreadable, or from a future that a rewind abandoned); the writer deletes its file."""
        self._memory.pop(iteration, None)
        self._disk.discard(iteration)
        self._forget(iteration)

    def _forget(self, iteration: int) -> None:
        self._queued.pop(iteration, None)
        self._writer.cancel(iteration)
        self._writer.put(_Job("delete", iteration, -1, self.path(iteration)))

    def discard_after(self, iteration: int) -> None:
        for it in self.iterations():
            if it > iteration:
                self.discard(it)

    def take_reports(self) -> list[Report]:
        """What happened on disk since the last call (Report), oldest first. Writes that failed or were pushed out
        no longer count as on disk; after a resume, the snapshots in memory missing from disk are queued again."""
        reports, self._skipped = self._skipped, []
        for report in self._writer.take_reports():
            if report.kind in ("written", "failed", "error") and report.iteration is not None:
                if self._queued.get(report.iteration) != report.branch:
                    if report.kind == "error":
                        reports.append(report)
                    continue  # a write of a future that a rewind abandoned since
                del self._queued[report.iteration]
                if report.kind == "written":
                    self.saved = report.iteration if self.saved is None else max(self.saved, report.iteration)
                else:
                    self._disk.discard(report.iteration)
            if report.kind == "resumed":
                self._write_again()
            if report.kind != "failed":
                reports.append(report)
        return reports

    def _write_again(self) -> None:
        """After a suspension or a removed folder: what is on disk is what the folder holds, and the snapshots in
        memory that it lacks are queued again."""
        self._disk = {it for it in self._disk if it in self._queued or self.path(it).exists()}
        self.saved = max((it for it in self._disk if it not in self._queued), default=None)
        for it, snapshot in sorted(self._memory.items()):
            if it not in self._disk:
                self._queue(snapshot)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def _payload(self, snapshot: Snapshot) -> dict[str, Any]:
        return {
            OWN_FORMAT_KEY: OWN_FORMAT_VERSION,
            **self.header,
            "g_ema": snapshot.generator,
            "generator": None,
            "discriminator": None,
            "meta": {"kind": "uncanny journey snapshot"},
            "journey": {"iteration": snapshot.iteration, "branch": snapshot.branch, "settings": snapshot.settings},
        }

    @staticmethod
    def read(path: Path) -> Snapshot:
        try:
            with quiet_torch_load():
                payload = torch.load(path, map_location="cpu", weights_only=True)
            journey = payload["journey"]
            return Snapshot(int(journey["iteration"]), int(journey["branch"]), payload["g_ema"],
                            journey.get("optimizer"), dict(journey["settings"]))
        except Exception as error:  # any unreadable file is skipped by the caller, whatever the reason
            raise SnapshotError(f"{path}: unreadable snapshot ({first_line(error)})") from None
