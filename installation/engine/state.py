"""What the engine tells the rest of the installation: one typed, documented state, plain data.

The engine publishes an `EngineState` after every command and event and at most 20 times a second; it crosses the
process boundary pickled, and it is what the HUD, OSC feedback and the status file read. `EngineProcess.poll()`
fills in the process facts (`alive`, `pid`, `exitcode`) and, for a process that died without saying so, the
status "crashed" with the cause in `error`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class EngineStatus(StrEnum):
    """What the engine is doing; a str, so it is written and compared as its plain value ("running")."""

    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    FAILED = "failed"  # paused by the engine itself (repeated rollbacks)
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"
    REFUSED = "refused"


STATUSES = tuple(EngineStatus)


@dataclass(frozen=True)
class EngineState:
    status: EngineStatus = EngineStatus.STARTING
    iteration: int = 0  # optimiser steps of the journey so far
    branch: int = 0  # grows with every rewind, reset and rollback
    landed: int = 0  # the iteration the newest jump (start, resume, rewind, back, reset, rollback) landed on: a
    # reader that polls after the engine stepped on still learns where the jump went (with `branch`, that it came)
    session: int = 0  # engine starts on this run folder, this one included
    objective: str = "logit"  # the inverted loss in use
    lr: float = 0.0  # the synthesis network's learning rate in use
    batch: int = 0
    limit: float = 0.0  # steps per second at most; 0 = as fast as the device goes
    journey_iterations: int = 0  # the arc's length ...
    journey_minutes: float = 0.0  # ... played over this many minutes of training; 0 = as fast as the device goes
    steps_per_second: float = 0.0  # measured over the last steps
    loss: float | None = None  # of the newest step
    batch_d: float | None = None  # mean D logit of the newest training batch
    grad_norm: float | None = None
    probe_d: float | None = None  # mean D logit of the fixed probe batch: lower = judged more fake
    diversity: float | None = None  # 1 - mean pairwise MS-SSIM of the probe pictures
    diversity0: float | None = None  # ... at iteration 0
    probe_d0: float | None = None  # ... at iteration 0
    collapsed: bool = False  # diversity below collapse_fraction of diversity0
    snapshots: tuple[int, ...] = ()  # iterations that can be rewound to
    snapshot_seconds: float = 0.0  # the newest snapshot's capture time (the training loop's share of it)
    snapshot_write_seconds: float = 0.0  # ... and its write time (on the writer's thread)
    saved_iteration: int | None = None  # the newest snapshot durable on disk: where a restart resumes from
    snapshot_bytes_hour: int = 0  # bytes of snapshot files written in the last hour
    snapshots_suspended: str | None = None  # why snapshots are not written now (the folder is full, read-only ...)
    batch_limit: int = 0  # the largest training batch found to fit the device's memory; 0 = no limit found
    degraded: str | None = None  # "degraded: ..." while a run that had a GPU goes on on the CPU
    rollbacks: int = 0  # non-finite steps undone so far
    errors: tuple[str, ...] = ()  # the newest few, one line each
    error_count: int = 0  # all errors so far (the tuple keeps only the newest)
    refusals: tuple[tuple[int, str], ...] = ()  # the newest few refused commands that carried an id: (id, why)
    failure: str | None = None  # why the engine paused itself
    storage: str | None = None  # why the run folder cannot be written now and what to do (training goes on unsaved)
    commands: int = 0  # commands received
    heartbeat: int = 0  # passes of the engine loop, growing while paused or idle too; frozen = the engine hangs
    device: str = ""  # the device in use, named: "cuda:0 NVIDIA GeForce RTX 4090", "cpu"
    resolution: int = 0
    seed: int = 0
    time: float = 0.0  # time.time() when published
    error: str | None = None  # why the session ended, for "crashed" and "refused"
    alive: bool = False  # the process facts, filled in by EngineProcess.poll()
    pid: int | None = None
    exitcode: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", EngineStatus(self.status))  # "crashed" from a caller: the member

    @property
    def paused(self) -> bool:
        return self.status in (EngineStatus.PAUSED, EngineStatus.FAILED)

    def replace(self, **changes: Any) -> EngineState:
        return dataclasses.replace(self, **changes)
