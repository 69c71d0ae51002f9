"""Snapshots of one journey: the newest few (and iteration 0) in memory, a thinned history on disk.

Each file `snapshots/itNNNNNNNN.pt` is an uncanny checkpoint without a discriminator (so `load_gan`, `inspect`
and `sample` read it) plus a `journey` entry holding the optimiser state and the live settings. A background
thread writes them through `atomic_torch_save`, so the training loop does not wait for the disk and a kill -9
leaves either the complete file or none (plus a hidden temporary file that the next start removes).

Retention (`retained`): iteration 0 and the newest are always kept; the `keep_recent` snapshots behind the newest
are kept at full density; further back the spacing doubles with every doubling of age; and if that still does
not fit the disk budget, the inner snapshot whose neighbours are closest together goes first.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..messages import first_line, quiet_torch_load
from ..models.loader import OWN_FORMAT_KEY, OWN_FORMAT_VERSION
from ..storage import atomic_torch_save

FILE_NAME = re.compile(r"it(\d{8})\.pt")
TEMP_NAME = re.compile(r"\.it\d{8}\.pt\..*\.tmp")


class SnapshotError(Exception):
    """A snapshot file cannot be read back; one line."""


@dataclass
class Snapshot:
    iteration: int
    branch: int
    generator: dict[str, Tensor]  # full state_dict, CPU copies
    optimizer: dict[str, Any]  # Adam state_dict, CPU copies
    settings: dict[str, Any]  # lr, loss, batch when it was taken

    def nbytes(self) -> int:
        return _tree_bytes(self.generator) + _tree_bytes(self.optimizer)


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


class _Writer:
    """One background thread doing the snapshot writes and deletions in order."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue(maxsize=2)  # backpressure: at most two snapshots wait in RAM
        self._lock = threading.Lock()
        self._failures: list[tuple[int, str]] = []
        self.last_write_seconds = 0.0
        self._thread = threading.Thread(target=self._loop, name="snapshot-writer", daemon=True)
        self._thread.start()

    def write(self, iteration: int, path: Path, payload: dict[str, Any]) -> None:
        self._jobs.put(("write", iteration, path, payload))

    def delete(self, iteration: int, path: Path) -> None:
        self._jobs.put(("delete", iteration, path, None))

    def flush(self) -> None:
        self._jobs.join()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def take_failures(self) -> list[tuple[int, str]]:
        with self._lock:
            failures, self._failures = self._failures, []
        return failures

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            kind, iteration, path, payload = job
            try:
                if kind == "write":
                    start = time.perf_counter()
                    atomic_torch_save(payload, path)
                    self.last_write_seconds = time.perf_counter() - start
                else:
                    path.unlink(missing_ok=True)
            except Exception as error:  # a dead writer thread would hang every later flush
                with self._lock:
                    self._failures.append((iteration, f"snapshot {iteration}: could not {kind} {path}: "
                                                      f"{first_line(error)}"))
            finally:
                self._jobs.task_done()
        self._jobs.task_done()


class SnapshotStore:
    """The snapshots of one run folder. `header` holds the checkpoint facts every file repeats."""

    def __init__(self, folder: Path, header: dict[str, Any], every: int, keep_recent: int, memory: int,
                 budget_bytes: float) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.header = header
        self.every, self.keep_recent, self.memory, self.budget_bytes = every, keep_recent, memory, budget_bytes
        self._memory: dict[int, Snapshot] = {}
        self._disk: set[int] = set()
        for path in self.folder.iterdir():
            if TEMP_NAME.fullmatch(path.name):
                path.unlink(missing_ok=True)  # a write that a kill interrupted; the rename never happened
            elif m := FILE_NAME.fullmatch(path.name):
                self._disk.add(int(m.group(1)))
        self._writer = _Writer()
        self.last_capture_seconds = 0.0

    def path(self, iteration: int) -> Path:
        return self.folder / f"it{iteration:08d}.pt"

    def iterations(self) -> list[int]:
        return sorted(self._disk | set(self._memory))

    def on_disk(self) -> list[int]:
        return sorted(self._disk)

    def in_memory(self) -> list[int]:
        return sorted(self._memory)

    @property
    def last_write_seconds(self) -> float:
        return self._writer.last_write_seconds

    def add(self, snapshot: Snapshot) -> None:
        it = snapshot.iteration
        self._memory[it] = snapshot
        for old in sorted(self._memory)[1:-(self.memory - 1)]:  # keep the oldest (iteration 0) and the newest
            del self._memory[old]
        self._disk.add(it)
        self._writer.write(it, self.path(it), self._payload(snapshot))
        keep = retained(self._disk, self.every, self.keep_recent, int(self.budget_bytes // max(snapshot.nbytes(), 1)))
        for old in sorted(self._disk - keep):
            self._writer.delete(old, self.path(old))
        self._disk = keep

    def load(self, iteration: int) -> Snapshot:
        if iteration in self._memory:
            return self._memory[iteration]
        self._writer.flush()
        snapshot = self.read(self.path(iteration))
        if snapshot.iteration == 0:
            self._memory[0] = snapshot  # reset must stay instant
        return snapshot

    def discard(self, iteration: int) -> None:
        """Forget one snapshot (unreadable, or from a future that a rewind abandoned)."""
        self._writer.flush()
        self._memory.pop(iteration, None)
        self._disk.discard(iteration)
        self.path(iteration).unlink(missing_ok=True)

    def discard_after(self, iteration: int) -> None:
        for it in self.iterations():
            if it > iteration:
                self.discard(it)

    def take_errors(self) -> list[str]:
        """Failed writes since the last call; their snapshots no longer count as on disk."""
        failures = self._writer.take_failures()
        for iteration, _ in failures:
            self._disk.discard(iteration)
        return [message for _, message in failures]

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
            "journey": {"iteration": snapshot.iteration, "branch": snapshot.branch,
                        "optimizer": snapshot.optimizer, "settings": snapshot.settings},
        }

    @staticmethod
    def read(path: Path) -> Snapshot:
        try:
            with quiet_torch_load():
                payload = torch.load(path, map_location="cpu", weights_only=True)
            journey = payload["journey"]
            return Snapshot(int(journey["iteration"]), int(journey["branch"]), payload["g_ema"],
                            journey["optimizer"], dict(journey["settings"]))
        except Exception as error:  # any unreadable file is skipped by the caller, whatever the reason
            raise SnapshotError(f"{path}: unreadable snapshot ({first_line(error)})") from None
