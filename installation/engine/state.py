"""What the engine tells the rest of the installation: one typed, documented state, plain data.

The engine publishes an `EngineState` after every command and event and at most 20 times a second; it crosses the
process boundary pickled, and it is what the HUD, OSC feedback and the status file read. `EngineProcess.poll()`
fills in the process facts (`alive`, `pid`, `exitcode`) and, for a process that died without saying so, the
status "crashed" with the cause in `error`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

STATUSES = ("starting", "running", "paused", "failed", "stopping", "stopped", "crashed", "refused")


@dataclass(frozen=True)
class EngineState:
    status: str = "starting"  # one of STATUSES; "failed" = paused by the engine itself (repeated rollbacks)
    iteration: int = 0  # optimiser steps of the journey so far
    branch: int = 0  # grows with every rewind, reset and rollback
    session: int = 0  # engine starts on this run folder, this one included
    objective: str = "logit"  # the inverted loss in use
    lr: float = 0.0  # the synthesis network's learning rate in use
    batch: int = 0
    limit: float = 0.0  # steps per second at most; 0 = as fast as the device goes
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
    snapshot_seconds: float = 0.0  # the newest snapshot's capture time
    snapshot_write_seconds: float = 0.0  # ... and its write time
    rollbacks: int = 0  # non-finite steps undone so far
    errors: tuple[str, ...] = ()  # the newest few, one line each
    error_count: int = 0  # all errors so far (the tuple keeps only the newest)
    failure: str | None = None  # why the engine paused itself
    storage: str | None = None  # why the run folder cannot be written now and what to do (training goes on unsaved)
    commands: int = 0  # commands received
    heartbeat: int = 0  # passes of the engine loop, growing while paused or idle too; frozen = the engine hangs
    device: str = ""
    resolution: int = 0
    seed: int = 0
    time: float = 0.0  # time.time() when published
    error: str | None = None  # why the session ended, for "crashed" and "refused"
    alive: bool = False  # the process facts, filled in by EngineProcess.poll()
    pid: int | None = None
    exitcode: int | None = None

    @property
    def paused(self) -> bool:
        return self.status in ("paused", "failed")

    def replace(self, **changes: Any) -> EngineState:
        return dataclasses.replace(self, **changes)
