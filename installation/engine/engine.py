"""The inverted fine-tuning engine: G is pushed, step by step, towards what its frozen D calls fake.

One `Engine` owns the GAN, the Adam optimiser, the snapshots and a run folder (runfolder.py):

    run.json        model facts, seed, probe size, iteration-0 probe values (written when the run starts), and the
                    count of engine sessions (starts and resumes) so far
    metrics.jsonl   one line per step, tagged with its session; see `journal.history` for reading it as one journey
    events.jsonl    start, resume, the death of the session before (with its cause and the iteration it reached),
                    commands, rewinds, resets, rollbacks, collapse, storage faults, errors, and the end: "stop", or
                    "abandoned" when the display process went away without stopping it
    snapshots/      see snapshots.py

Both logs are append-only JSON lines; a line cut off by a kill or power cut is dropped when the next session opens
the file, so new lines never join a broken one. A run folder that cannot be written (full, read-only, deleted) does
not stop the engine: it trains on from memory, says so in `EngineState.storage`, and saves again by itself once
the folder can be written.

`step()` is one optimiser step; `apply(command)` changes settings between steps; `run()` alternates commands, the
`between_steps(engine)` hook (the journey command's contact sheet) and steps until told to stop. A `drawer`
(drawer.py) draws the display's frames beside it on a thread of its own, from a copy of G refreshed after every step.

Commands are read as they arrive by a thread of their own (`run(receive=...)`), also while a step is in progress, and
prepared there (`prepare`): a rewind, reset or back is resolved at once to its snapshot (taken from memory, where
the newest and iteration 0 are kept), whose weights go to the drawer at once, so the picture jumps within a frame;
the trainer carries out the same resolved jump after its step (the step in progress is abandoned), publishes the
state at the jump's iteration before it steps again, and holds that state for JUMP_HOLD, so that every reader sees it.

Pace: `journey_minutes` plays `journey_iterations` over that many minutes of training (paused time does not count),
on any device; `steps_per_second` stays a cap beside it. The time training does not take goes to the drawer.

On a folder that already holds a run, the engine resumes from its newest readable snapshot; the run's own seed,
probe and live settings (lr, loss, batch as of that snapshot) win over the config passed in.

Randomness: the training batch of iteration i on branch b is drawn from a generator seeded by (seed, b, i), so a run
resumed after a crash repeats what the uninterrupted run would have done, while a rewind or rollback starts a new
branch and explores a different path.

Metrics: `iteration` counts optimiser steps. `loss`, `batch_d` (mean D logit of the training batch) and `grad_norm`
(L2 over all G gradients) belong to the step that reached it. `probe_d` (mean D logit of a fixed batch of latents
and noise) and `diversity` describe the weights after it; they are measured every `probe_every` iterations (null in
between; a probe costs about 2/3 of a step) and after every start, rewind and rollback. Diversity is 1 - the mean
pairwise MS-SSIM of the probe images as the screen shows them (similarity.py); the run counts as collapsed while it is
below `collapse_fraction` of its iteration-0 value.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..models import GAN
from .commands import Command, CommandError, command_id, parse_command
from .config import ConfigError, EngineConfig, describe_device, journey_pace, starting_lr
from .errors import EngineError, EngineRefused, RunFolderError  # noqa: F401 (raised from here since the start)
from .losses import inverted_loss
from .runfolder import RunFolder, check_run_folder, model_facts  # noqa: F401 (the live run and tests use them)
from .similarity import DIVERSITY_MEASURE, diversity
from .snapshots import Snapshot, SnapshotError, SnapshotStore, capture, clone_tree
from .state import EngineState, EngineStatus

if TYPE_CHECKING:
    from .drawer import FrameDrawer

BETAS = (0.0, 0.99)  # rosinality train.py, and FreezeD fine-tuning the same checkpoints
IDLE_WAIT = 0.02  # seconds between hook calls while paused or throttled
PUBLISH_EVERY = 0.05  # at most 20 state updates a second, plus one after every command or event
JUMP_HOLD = 0.25  # seconds a rewind, reset or back holds its iteration before the next step: every reader sees it
JUMPS = ("rewind", "reset", "back")
ERRORS_KEPT = 8
REFUSALS_KEPT = 16  # refused commands with an id, kept in the state until newer ones push them out
SKIPS_SAID_EVERY = 600.0  # seconds: a disk that stays behind the snapshots is said again this often, with a count
PROBE_STREAM, STEP_STREAM = 1, 2
CLEAN_ENDS = ("stop", "abandoned")  # the last event of a session that ended itself

Hook = Callable[["Engine"], None]


@dataclass(frozen=True)
class Jump:
    """A rewind, reset or back resolved to its snapshot when it arrived (`Engine.prepare`)."""

    kind: str  # rewind | reset | back
    snapshot: Snapshot | None  # None: no readable snapshot at or before the target
    back_target: int | None  # the next `back` counts from here
    ticket: int  # the drawer's ticket for it (0 without a drawer)
    unreadable: tuple[tuple[int, str], ...] = ()  # snapshots found unreadable on the way: discarded, reported
    requested: int | None = None  # the iteration a rewind asked for
    looked_for: int = 0


@dataclass(frozen=True)
class Position:
    """Where the trainer is, as the command thread resolves jumps from it (published whole by the trainer)."""

    iteration: int
    back_target: int | None
    snapshots: tuple[int, ...]
    memory: dict[int, Snapshot]  # the snapshots held in memory (iteration 0 and the newest)


@dataclass(frozen=True)
class Prepared:
    """A command as it arrived: parsed and, for jumps and walk settings, already acted on for the drawer; or why it
    was refused (the trainer reports it in order with the others)."""

    command: Command | None
    error: str | None = None
    jump: Jump | None = None
    sender: int | None = None  # the command's id: its refusal goes back to whoever sent it (EngineState.refusals)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from non-negative integers (seed, stream, branch, iteration)."""
    return int.from_bytes(np.random.SeedSequence(parts).generate_state(2).tobytes(), "little") & (2**63 - 1)


def fixed_latents(gan: GAN, count: int, seed: int) -> tuple[Tensor, list[Tensor]]:
    """z and noise drawn on the CPU, so the same seed gives the same probe on every device."""
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(count, gan.latent_dim, generator=rng).to(gan.device)
    return z, gan.make_noise(count, rng)


class Engine:
    """Fine-tunes `gan.generator` against its frozen discriminator; see the module docstring."""

    def __init__(self, gan: GAN, config: EngineConfig, run_dir: str | Path, between_steps: Hook | None = None,
                 previous_death: str | None = None, drawer: FrameDrawer | None = None) -> None:
        if gan.discriminator is None:
            raise EngineError("this GAN has no discriminator, which the fine-tuning needs")
        self.gan, self.config, self.run_dir, self.between_steps = gan, config, Path(run_dir), between_steps
        self.drawer = drawer
        self.device = gan.device
        # live settings, changed by commands
        self.lr, self.loss_name, self.batch = starting_lr(config.lr, gan.journey_lr), config.loss, config.batch
        self.steps_per_second = config.steps_per_second
        self.journey_iterations, self.journey_minutes = config.journey_iterations, config.journey_minutes
        # What the command thread resolves jumps from: the trainer's published position, and the jumps resolved
        # but not yet carried out
        self._jumps = threading.Lock()
        self._position = Position(0, None, (), {})
        self._plan: tuple[int, int | None] | None = None  # (iteration, back target) once the pending jumps are done
        self._resolved = self._carried = 0  # jumps resolved by `prepare` and carried out by the trainer
        self._ticket = 0  # the drawer's ticket of the newest jump carried out
        self._drawing = False
        self.seed, self.probe_size = config.seed, config.probe_size
        self.iteration = self.branch = 0
        self.session = 1
        self._back_target: int | None = None  # where the last `back` went, while no newer snapshot exists
        self.paused = self.stopping = self.collapsed = False
        self.failure: str | None = None
        self.errors: deque[str] = deque(maxlen=ERRORS_KEPT)
        self.refusals: deque[tuple[int, str]] = deque(maxlen=REFUSALS_KEPT)
        self.landed = 0  # where the newest jump went (EngineState.landed)
        self.error_count = self.rollbacks = self.commands = 0
        self.heartbeat = 0  # passes of the run loop
        self.last: dict[str, Any] = {}  # newest loss, batch_d, grad_norm, probe_d, diversity
        self.diversity0 = self.probe_d0 = None
        self._rollbacks_in_row = 0
        self._fault: str | None = None
        self._step_times: deque[float] = deque(maxlen=20)
        self._next_step_at = self._last_step_at = self._held_until = 0.0
        self.device_name = describe_device(self.device)  # e.g. "cuda:0 NVIDIA RTX 4090", "cpu"
        self.degraded: str | None = None  # said loudly: a GPU run that goes on on the CPU
        self.batch_limit = 0  # the largest batch found to fit the device's memory (0: none found yet)
        self._lowered_from = 0  # the batch an out-of-memory lowered, until the lower one has stepped
        self._skips: list[int] = []  # snapshots the disk was too slow for, since they were last said
        self._skips_said = -math.inf
        self._dirty = True
        self._closed = False

        discriminator = gan.discriminator
        discriminator.eval()  # frozen: no parameter gradients, still differentiable with respect to its input
        for p in discriminator.parameters():
            p.requires_grad_(False)
        gan.generator.train()
        self.optimizer = torch.optim.Adam([
            {"params": gan.synthesis_parameters(), "lr": self.lr},
            {"params": gan.mapping_parameters(), "lr": self.lr * config.mapping_lr_mult},
        ], betas=BETAS)
        self._rng = torch.Generator(device=self.device)

        self.folder = RunFolder(self.run_dir, config.journal_mb)
        self.folder.make()
        self.folder.lock()
        try:
            info = self.folder.check(gan)
            torn = self.folder.open_journal()
            # g_config: NVlabs networks are rebuilt from their settings, not from the tensors' shapes
            header = {"arch": gan.arch, "resolution": gan.resolution, "mean_latent": gan.mean_latent.detach().cpu(),
                      "trained_resolution": max(gan.trained_resolutions or (gan.resolution,)),
                      "g_config": gan.g_config}
            self.store = SnapshotStore(self.run_dir / "snapshots", header, config.snapshot_every, config.keep_recent,
                                       config.memory_snapshots, config.disk_budget_mb * 2**20)
            if info is not None and self.store.iterations():
                self.session = int(info.get("sessions", 1)) + 1
                self._check_degraded(info.get("device"))
                # a GPU run going on on the CPU keeps naming its GPU, so every restart without it says so again
                self.folder.write_info({**info, "sessions": self.session,
                                        "device": info.get("device") if self.degraded else self.device_name})
                self._record_death(previous_death)
                for name in torn:
                    self._event("torn_line_dropped", file=name)
                self._resume(info)
            elif self.store.iterations():
                raise RunFolderError(f"{self.run_dir}: holds snapshots but no run.json; choose an empty run folder")
            else:
                self._record_death(previous_death)
                self._start_new()
            self._publish_position()
        except BaseException:
            if hasattr(self, "store"):
                self.store.close()
            self.folder.release()
            raise

    # ------------------------------------------------------------------------------------------ start / resume

    def _record_death(self, cause: str | None) -> None:
        """A "died" event for the session before when it did not end itself, at the iteration it had reached; also
        for an engine that died while loading (`cause` known to the supervisor that restarted it, though the
        session before ended cleanly or never was: that engine never opened the folder)."""
        last = self.folder.last_event
        if last is not None and last.get("event") not in CLEAN_ENDS:
            fields = {"session": self.session - 1, "last_seen": last.get("time")}
        elif cause is not None:
            fields = {"while_loading": True}
        else:
            return
        self._event("died", **self.folder.reached, **fields,
                    cause=cause or "the session ended without a clean stop (killed, crashed or a power cut)")

    def _start_new(self) -> None:
        self._make_probe()
        if not self._probe():
            raise EngineError("the model's images are not finite before any fine-tuning; the checkpoint is broken")
        self.diversity0, self.probe_d0 = self.last["diversity"], self.last["probe_d"]
        info = {**model_facts(self.gan), "source": self.gan.source, "seed": self.seed, "probe_size": self.probe_size,
                "diversity0": self.diversity0, "diversity_measure": DIVERSITY_MEASURE, "probe_d0": self.probe_d0,
                "created": time.time(), "sessions": self.session, "device": self.device_name}
        self.folder.write_info(info)
        self._write_metrics({"iteration": 0, "branch": 0, "session": self.session, "time": time.time(),
                             "loss": None, "batch_d": None,
                             "grad_norm": None, "lr": self.lr, "objective": self.loss_name, "batch": self.batch,
                             "probe_d": self.probe_d0, "diversity": self.diversity0})
        self.snapshot()
        self._event("start", device=self.device_name, source=self.gan.source, seed=self.seed)

    def _resume(self, info: dict[str, Any]) -> None:
        self.seed, self.probe_size = int(info["seed"]), int(info["probe_size"])
        self.diversity0, self.probe_d0 = info["diversity0"], info["probe_d0"]
        self._make_probe()
        if info.get("diversity_measure") != DIVERSITY_MEASURE:
            self._remeasure_diversity0(info)
        snapshot = self._load_at_or_before(math.inf, RunFolderError)
        self._restore(snapshot, settings=True)
        self.branch, self.landed = snapshot.branch, snapshot.iteration
        self._load_at_or_before(0, RunFolderError)  # keeps iteration 0 in memory: reset must be instant
        self._probe()
        self._event("resume", device=self.device_name, snapshot=snapshot.iteration, session=self.session,
                    optimizer=snapshot.optimizer is not None)
        if self.degraded:
            self._error(self.degraded)

    def _check_degraded(self, before: Any) -> None:
        """With device "auto", a run that had a GPU and now finds none goes on on the CPU, said loudly."""
        if self.config.device == "auto" and isinstance(before, str) and before.startswith("cuda") \
                and self.device.type == "cpu":
            self.degraded = (f"degraded: the engine runs on the CPU, far slower, because the GPU this run used "
                             f"({before}) is not available now; check the GPU and its driver (nvidia-smi), then "
                             "restart")

    def _remeasure_diversity0(self, info: dict[str, Any]) -> None:
        """A run folder from a release with another diversity measure: its iteration-0 value, measured anew from the
        iteration-0 snapshot, so the collapse line compares like with like."""
        self._restore(self._load_at_or_before(0), settings=False)
        self.diversity0 = None  # no collapse verdict against a value in the old measure
        if self._probe():
            old, self.diversity0 = info["diversity0"], self.last["diversity"]
            self.folder.write_info({**(self.folder.info or info), "diversity0": self.diversity0,
                                    "diversity_measure": DIVERSITY_MEASURE})
            self._event("diversity_remeasured", measure=DIVERSITY_MEASURE, old=old, diversity0=self.diversity0)

    def _make_probe(self) -> None:
        seed = derive_seed(self.seed, PROBE_STREAM)
        self._probe_z, self._probe_noise = fixed_latents(self.gan, self.probe_size, seed)

    # ------------------------------------------------------------------------------------------------ stepping

    def step(self) -> dict[str, Any] | None:
        """One optimiser step. Returns its metrics line, or None when the non-finite guard rolled it back (or training
        paused because not even batch 1 fits the device's memory).

        Out of memory, the step is tried again at half the batch until one fits; the batch it settles on bounds the
        `batch` command for the rest of the session, and is said once."""
        while True:
            try:
                line = self._step()
                break
            except RuntimeError as error:  # torch.OutOfMemoryError is one
                if not is_out_of_memory(error):
                    raise
            # outside the except: its traceback holds the failed step's tensors, which must go before a retry
            if not self._lower_batch():
                return None
        if self._lowered_from and line is not None:
            self._error(f"out of memory at batch {self._lowered_from} on {self.device_name}: the training batch is "
                        f"now {self.batch}, the most that fits next to everything else on the device")
            self._event("batch_lowered", old=self._lowered_from, new=self.batch)
            self._lowered_from = 0
        return line

    def _lower_batch(self) -> bool:
        """After an out-of-memory step: halve the batch (True), or at batch 1 pause training with the reason (False)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.batch == 1:
            self.paused = True
            self.failure = (f"out of memory on {self.device_name} even at batch 1: training paused; free the device's "
                            "memory (other programs, a lower [render] precision or fewer walks) and resume")
            self._error(self.failure)
            return False
        self._lowered_from = self._lowered_from or self.batch
        self.batch = self.batch_limit = self.batch // 2
        return True

    def _step(self) -> dict[str, Any] | None:
        started = time.monotonic()
        self._rng.manual_seed(derive_seed(self.seed, STEP_STREAM, self.branch, self.iteration))
        z = torch.randn(self.batch, self.gan.latent_dim, generator=self._rng, device=self.device)
        noise = self.gan.make_noise(self.batch, self._rng)
        fault, self._fault = self._fault, None
        logits = self.gan.discriminate(self.gan.generate(z, noise))
        loss = inverted_loss(self.loss_name, logits)
        if fault == "loss":
            loss = loss * math.nan
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grads = [p.grad for p in params if p.grad is not None]
        if fault == "grad":
            grads[0].view(-1)[0] = math.nan
        grad_norm = torch.nn.utils.get_total_norm(grads)
        self.optimizer.step()
        if fault == "weight":
            params[0].data.view(-1)[0] = math.nan
        # One device sync for every check: a NaN/Inf weight makes the total weight norm non-finite.
        checks = torch.stack([loss.detach(), logits.detach().mean(), grad_norm,
                              torch.nn.utils.get_total_norm(params)]).tolist()
        if not all(map(math.isfinite, checks)):
            names = ("loss", "D score", "gradients", "weights")
            self._rollback(", ".join(n for n, v in zip(names, checks) if not math.isfinite(v)))
            return None
        probed = (self.iteration + 1) % self.config.probe_every == 0
        if probed and not self._probe():
            self._rollback("probe images")
            return None
        self.iteration += 1
        self._step_times.append(time.monotonic())
        self.last.update(loss=checks[0], batch_d=checks[1], grad_norm=checks[2])
        line = {"iteration": self.iteration, "branch": self.branch, "session": self.session, "time": time.time(),
                "loss": checks[0],
                "batch_d": checks[1], "grad_norm": checks[2], "lr": self.lr, "objective": self.loss_name,
                "batch": self.batch, "probe_d": self.last["probe_d"] if probed else None,
                "diversity": self.last["diversity"] if probed else None}
        self._write_metrics(line)
        if self.iteration % self.config.snapshot_every == 0:
            self.snapshot()
        self._publish_position()
        self._snapshot_reports()
        if self.drawer is not None:
            self.drawer.follow(self.gan.generator, self.iteration, self._ticket, time.monotonic() - started)
        return line

    @torch.no_grad()
    def _probe(self) -> bool:
        """Score the fixed probe batch; False when its numbers are not finite."""
        images = self.gan.generate(self._probe_z, self._probe_noise)
        probe_d, spread = self.gan.discriminate(images).mean().item(), diversity(images)
        if not (math.isfinite(probe_d) and math.isfinite(spread)):
            return False
        self.last.update(probe_d=probe_d, diversity=spread)
        collapsed = self.diversity0 is not None and spread < self.config.collapse_fraction * self.diversity0
        if collapsed != self.collapsed:
            self.collapsed = collapsed
            self._event("collapse" if collapsed else "recovered", diversity=spread, diversity0=self.diversity0)
        return True

    # -------------------------------------------------------------------------------------- snapshots & rewind

    def snapshot(self) -> None:
        """Store the current G weights and optimiser state (no-op if this iteration already has a snapshot). The
        copies are queued, not waited for (snapshots.capture); the "snapshot" event comes once the file is on disk."""
        if self.iteration in self.store.iterations():
            return
        start = time.perf_counter()
        (generator, optimizer), ready = capture((self.gan.generator.state_dict(), self.optimizer.state_dict()))
        self.store.add(Snapshot(self.iteration, self.branch, generator, optimizer,
                                {"lr": self.lr, "loss": self.loss_name, "batch": self.batch}, ready))
        self.store.last_capture_seconds = time.perf_counter() - start
        self._rollbacks_in_row = 0
        self._back_target = None  # a new snapshot: the next `back` counts from here
        self._publish_position()
        self._dirty = True

    def _snapshot_reports(self) -> None:
        """What the snapshot writer did: an event per file durable on disk, and the problems said."""
        for report in self.store.take_reports():
            match report.kind:
                case "written":
                    self._event("snapshot", iteration=report.iteration, branch=report.branch,
                                mb=round(report.nbytes / 2**20, 2), seconds=round(report.seconds, 3))
                case "skipped":
                    self._event("snapshot_skipped", iteration=report.iteration, branch=report.branch)
                    self._skips.append(report.iteration)
                case "resumed":
                    self._event("snapshots_resumed", message=report.message)  # run.json: RunFolder's to write again
                case _:
                    self._error(report.message)
        if self._skips and time.monotonic() - self._skips_said >= SKIPS_SAID_EVERY:
            which = f"snapshot {self._skips[0]}" if len(self._skips) == 1 else \
                f"{len(self._skips)} snapshots ({self._skips[0]}..{self._skips[-1]})"
            self._error(f"{which} not written: the disk is slower than the snapshots come; they stay rewind points "
                        f"while in memory (raise [engine] snapshot_every, or use a faster disk)")
            self._skips, self._skips_said = [], time.monotonic()

    def rewind(self, iteration: int) -> int:
        """Go back to the newest snapshot at or before `iteration` (an iteration ahead of the journey means now: a
        performer's fader is never refused for being early); returns the iteration restored."""
        return self._carry_out(self._resolve(Command("rewind", iteration)))

    def reset(self) -> None:
        """Back to iteration 0, the unmodified model (the live settings stay as they are)."""
        self._carry_out(self._resolve(Command("reset")))

    def back(self) -> int:
        """One snapshot further back: the newest before the current iteration, or, while the journey has not
        reached a new snapshot since the last `back`, the one before that; iteration 0 at the most."""
        return self._carry_out(self._resolve(Command("back")))

    def _publish_position(self) -> None:
        """What the command thread resolves jumps from (the trainer's thread alone touches the store): the
        iteration, the snapshots and those held in memory, replaced whole, never waiting for a disk."""
        memory = self.store.held()  # in memory, their copies perhaps still under way: no disk read, no wait
        with self._jumps:
            self._position = Position(self.iteration, self._back_target, tuple(self.store.iterations()), memory)

    def _resolve(self, command: Command) -> Jump:
        """The snapshot a rewind, reset or back goes to, decided as it arrives (on the command thread, one at a
        time): counted from where the jumps resolved before it leave the journey, so carrying them out later in
        order ends the same way. Its weights go to the drawer at once. CommandError for a rewind beyond the
        journey."""
        with self._jumps:
            position = self._position
            iteration, back_target = self._plan or (position.iteration, position.back_target)
        match command.name, command.value:
            case "rewind", requested:
                if requested < 0:
                    raise CommandError(f"cannot rewind to {requested}: iterations start at 0")
                target = min(requested, iteration)  # ahead of the journey means now: a fader is never refused
            case "back", _:
                below = iteration if back_target is None else min(iteration, back_target)
                target = max((it for it in position.snapshots if it < below), default=0)
            case _:
                target = 0
        snapshot, unreadable = None, []
        for it in reversed(position.snapshots):
            if it > target:
                continue
            if it in position.memory:
                snapshot = position.memory[it].wait()  # its host copies complete (on a GPU, under way just after)
                break
            try:  # an older one, from the disk (off the trainer's way)
                snapshot = _read_written(self.store, it)
                break
            except SnapshotError as error:
                unreadable.append((it, str(error)))
        landed = snapshot.iteration if snapshot is not None else target
        back_target = landed if command.name == "back" else back_target
        with self._jumps:
            ticket = self.drawer.jump(snapshot.generator, landed) \
                if self.drawer is not None and snapshot is not None else self._ticket
            self._resolved += 1
            self._plan = (landed, back_target)
        return Jump(command.name, snapshot, back_target, ticket, tuple(unreadable),
                    command.value if command.name == "rewind" else None, target)

    def _carry_out(self, jump: Jump) -> int:
        """The trainer's side of a resolved jump; returns the iteration it went back to."""
        for it, message in jump.unreadable:
            if it in self.store.iterations():  # not one that retention deleted meanwhile
                self._error(message)
                self.store.discard(it)
        if jump.snapshot is None:
            raise EngineError(f"{self.run_dir}: no readable snapshot at or before iteration {jump.looked_for}")
        self._jump_to(jump.snapshot)
        self._ticket, self._back_target = jump.ticket, jump.back_target
        self._publish_position()  # before the plan is cleared: a jump resolved next counts from here, not from before
        with self._jumps:
            self._carried += 1
            if self._carried == self._resolved:
                self._plan = None  # the position published next is where the journey is
        self._held_until = time.monotonic() + JUMP_HOLD
        self._after_jump(jump.kind, **({"requested": jump.requested} if jump.kind == "rewind" else {}))
        return jump.snapshot.iteration

    def _go_back(self, iteration: float, event: str, **fields: Any) -> int:
        """A jump of the trainer's own (a rollback): the drawer follows it as a new generation."""
        snapshot = self._load_at_or_before(iteration)
        self._jump_to(snapshot)
        self._after_jump(event, **fields)
        if self.drawer is not None:
            self.drawer.follow(self.gan.generator, self.iteration, self._ticket, jumped=True)
        return snapshot.iteration

    def _jump_to(self, snapshot: Snapshot) -> None:
        self.store.discard_after(snapshot.iteration)  # the abandoned future; events.jsonl keeps its story
        branch = max(self.branch, snapshot.branch) + 1
        self._restore(snapshot, settings=False)
        self.branch, self.landed = branch, snapshot.iteration

    def _after_jump(self, event: str, **fields: Any) -> None:
        self._publish_position()
        self._probe()
        self._event(event, to=self.iteration, lr=self.lr, **fields)

    def _load_at_or_before(self, iteration: float, error_type: type[EngineError] = EngineError) -> Snapshot:
        for it in reversed(self.store.iterations()):
            if it <= iteration:
                try:
                    return self.store.load(it)
                except SnapshotError as error:
                    self._error(str(error))
                    self.store.discard(it)
        raise error_type(f"{self.run_dir}: no readable snapshot at or before iteration {iteration}")

    def _restore(self, snapshot: Snapshot, settings: bool) -> None:
        self.gan.generator.load_state_dict(snapshot.generator)  # copies into the live parameters
        if snapshot.optimizer is None:  # a rewind point (only the newest snapshot keeps its moments): Adam afresh
            self.optimizer.state.clear()
        else:
            # A CPU copy: load_state_dict moves moments to the parameters' device but keeps Adam's `step` counters on
            # the CPU as non-capturable Adam requires, and it would otherwise share (and mutate) the snapshot's tensors.
            self.optimizer.load_state_dict(clone_tree(snapshot.optimizer))
        self.optimizer.zero_grad(set_to_none=True)
        if settings:
            self.lr, self.loss_name, self.batch = (snapshot.settings[k] for k in ("lr", "loss", "batch"))
        self._set_lr(self.lr)
        self.iteration = snapshot.iteration
        self._step_times.clear()

    def _rollback(self, cause: str) -> None:
        failed_at, old_lr = self.iteration + 1, self.lr
        self.lr = old_lr * self.config.nan_lr_factor
        target = self._go_back(self.iteration, "rollback", cause=cause, failed_at=failed_at, old_lr=old_lr)
        self.rollbacks += 1
        self._rollbacks_in_row += 1
        self._error(f"non-finite {cause} at iteration {failed_at}: rolled back to {target}, "
                    f"lr {old_lr:.3g} -> {self.lr:.3g}")
        if self._rollbacks_in_row >= self.config.max_rollbacks:
            self.paused = True
            self.failure = (f"paused after {self._rollbacks_in_row} rollbacks in a row; "
                            "lower the lr, rewind or reset, then resume")
            self._error(self.failure)

    def _set_lr(self, lr: float) -> None:
        self.optimizer.param_groups[0]["lr"] = lr
        self.optimizer.param_groups[1]["lr"] = lr * self.config.mapping_lr_mult

    # ---------------------------------------------------------------------------------------------- commands

    def prepare(self, raw: Any) -> Prepared:
        """A command as it arrives, from any thread: parsed, and what concerns the picture done at once (a jump's
        weights and new walk settings go to the drawer); never raises. `apply` does the rest, in order."""
        sender = command_id(raw)
        try:
            command = parse_command(raw)
            if command.name in JUMPS:
                return Prepared(command, jump=self._resolve(command), sender=sender)
            if command.name == "render":
                if self.drawer is None:
                    raise CommandError("render: nothing draws frames in this engine")
                try:
                    self.drawer.configure(command.value)
                except (ValueError, ConfigError) as error:
                    raise CommandError(f"render: {error}") from None
            return Prepared(command, sender=sender)
        except CommandError as error:
            return Prepared(None, str(error), sender=sender)

    def apply(self, raw: Prepared | Command | str | dict | tuple) -> Command:
        """Validate and apply one command between steps; raises CommandError (and changes nothing) when bad."""
        prepared = raw if isinstance(raw, Prepared) else self.prepare(raw)
        if prepared.error is not None:
            raise CommandError(prepared.error)
        command = prepared.command
        match command.name, command.value:
            case "pause", _:
                self.paused = True
                self._step_times.clear()
            case "resume", _:
                self.paused, self.failure, self._rollbacks_in_row = False, None, 0
            case "toggle_pause", _:
                self.apply("resume" if self.paused else "pause")
            case "limit", rate:
                self.steps_per_second = rate
                self._next_step_at = self._last_step_at + self._interval()
            case "journey_minutes", minutes:
                self.journey_minutes = minutes
                self._next_step_at = self._last_step_at + self._interval()
            case "lr", lr:
                self.lr = starting_lr(lr, self.gan.journey_lr)
                self._set_lr(self.lr)
            case "loss", name:
                self.loss_name = name
            case "batch", batch:
                if self.batch_limit and batch > self.batch_limit:
                    raise CommandError(f"batch {batch}: at most {self.batch_limit} fits in the memory of "
                                       f"{self.device_name} (found at an out-of-memory); choose 1..{self.batch_limit}")
                self.batch = batch
            case "rewind" | "reset" | "back", _:
                self._carry_out(prepared.jump)
            case "snapshot", _:
                self.snapshot()
            case "shutdown", _:
                self.stopping = True
            case "fault", kind:
                self._fault = kind
            case "render", _:
                pass  # the drawer has them already (prepare)
        self._event("command", command=command.name, value=command.value)
        return command

    def submit(self, raw: Any) -> bool:
        """`apply`, recording a rejection in `errors` instead of raising: the engine keeps running."""
        self.commands += 1
        try:
            self.apply(raw)
            return True
        except CommandError as error:
            message = f"rejected command: {error}"
            self._error(message)
            if (sender := raw.sender if isinstance(raw, Prepared) else command_id(raw)) is not None:
                self.refusals.append((sender, message))
            return False

    # -------------------------------------------------------------------------------------------------- loop

    def run(self, receive: Callable[[float], list[Any]] | None = None,
            publish: Callable[[EngineState], None] | None = None, until: int | None = None) -> None:
        """Loop: commands, the between-steps hook, the state, a step; until shutdown, `until` iterations, or (with
        no command source to resume it) a pause. `receive(timeout)` returns the commands that arrived within
        `timeout` seconds (a thread of its own calls it); `publish(state)` gets the state at most every
        PUBLISH_EVERY s, after changes, and always before a step that follows a change."""
        if self.drawer is not None and not self._drawing:
            self.drawer.start(self.gan, self.iteration, self._ticket)
            self._drawing = True
        mailbox = _Mailbox(self, receive) if receive is not None else None
        last_publish = 0.0
        try:
            while True:
                self.heartbeat += 1  # every pass, paused or not: the supervisor's sign of life (live/supervisor.py)
                wait = self._wait()
                if mailbox is not None:
                    for prepared in mailbox.take(wait):
                        self.submit(prepared)
                elif wait:
                    time.sleep(wait)
                if self.drawer is not None and self.drawer.failure:
                    raise EngineError(self.drawer.failure)
                if self.between_steps is not None:
                    self.between_steps(self)
                self._look_after_storage()
                done = (self.stopping or (until is not None and self.iteration >= until)
                        or (receive is None and self.paused))
                if publish is not None and (done or self._dirty or time.monotonic() - last_publish >= PUBLISH_EVERY):
                    publish(self.state())
                    last_publish, self._dirty = time.monotonic(), False
                if done:
                    return
                if self._step_due():
                    self.step()
                else:
                    self._snapshot_reports()  # paused or waiting: what the writer did is still said
        finally:
            if mailbox is not None:
                mailbox.stop()

    def _interval(self) -> float:
        """Seconds from one step's start to the next: the journey's pace or the steps_per_second cap, the slower."""
        rates = [rate for rate in (self.steps_per_second, journey_pace(self.journey_iterations,
                                                                      self.journey_minutes)) if rate]
        return 1 / min(rates) if rates else 0.0

    def _step_due(self) -> bool:
        """Whether to step now; keeps the cadence while the device keeps up, with no burst after it did not (or after
        a pause): the next step is one interval after this one, or after the moment it was due."""
        now = time.monotonic()
        if self.paused or now < max(self._next_step_at, self._held_until):
            return False
        interval = self._interval()
        self._last_step_at = now
        self._next_step_at = max(self._next_step_at, now) + interval
        return True

    def _wait(self) -> float:
        if self.paused:
            return IDLE_WAIT
        return min(IDLE_WAIT, max(0.0, max(self._next_step_at, self._held_until) - time.monotonic()))

    def state(self) -> EngineState:
        """What the caller shows: progress, numbers, snapshots, errors (see state.py)."""
        times = self._step_times
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        status = (EngineStatus.STOPPED if self._closed else EngineStatus.STOPPING if self.stopping
                  else EngineStatus.FAILED if self.failure else EngineStatus.PAUSED if self.paused
                  else EngineStatus.RUNNING)
        return EngineState(
            status=status, iteration=self.iteration, branch=self.branch, landed=self.landed, session=self.session,
            objective=self.loss_name, lr=self.lr, batch=self.batch, limit=self.steps_per_second,
            journey_iterations=self.journey_iterations, journey_minutes=self.journey_minutes,
            steps_per_second=rate, **{k: self.last.get(k) for k in ("loss", "batch_d", "grad_norm", "probe_d",
                                                                      "diversity")},
            diversity0=self.diversity0, probe_d0=self.probe_d0, collapsed=self.collapsed,
            snapshots=tuple(self.store.iterations()), snapshot_seconds=self.store.last_capture_seconds,
            snapshot_write_seconds=self.store.last_write_seconds, saved_iteration=self.store.saved,
            snapshot_bytes_hour=self.store.bytes_last_hour(), snapshots_suspended=self.store.suspended,
            batch_limit=self.batch_limit, degraded=self.degraded, rollbacks=self.rollbacks,
            errors=tuple(self.errors), error_count=self.error_count, refusals=tuple(self.refusals),
            failure=self.failure, storage=self.folder.problem,
            commands=self.commands, heartbeat=self.heartbeat, device=self.device_name,
            resolution=self.gan.resolution, seed=self.seed,
            time=time.time())

    def record_crash(self, message: str) -> None:
        """Log a failure that ends this session (the supervisor restarts the engine, which resumes)."""
        self._event("crash", error=message)

    def close(self, snapshot: bool = True, cause: str | None = None) -> None:
        """Finish pending snapshot writes (taking a last one of the current weights unless told not to). `cause`:
        why the engine stops though nobody asked it to (its display process went away), logged as "abandoned"."""
        if self._closed:
            return
        if self.drawer is not None:
            self.drawer.close()
        if snapshot:
            self.snapshot()
        self.store.flush()
        self._snapshot_reports()
        self.store.close()
        self._look_after_storage(math.inf)  # a last look: a folder removed (or made again) since is written again
        if cause is None:
            self._event("stop")
        else:
            self._event("abandoned", cause=cause)
        self._closed = True
        problem = self.folder.problem
        if lost := self.folder.close():
            self.errors.append(f"{lost} lines of metrics and events were lost ({problem})")
            self.error_count += 1

    # ------------------------------------------------------------------------------------------------ logging

    def _error(self, message: str) -> None:
        self.errors.append(message)
        self.error_count += 1
        self._event("error", message=message)

    def _event(self, kind: str, **fields: Any) -> None:
        self._dirty = True
        self.folder.append("events", {"time": time.time(), "event": kind, "iteration": self.iteration,
                                      "branch": self.branch, **fields})

    def _write_metrics(self, line: dict[str, Any]) -> None:
        self.folder.append("metrics", line)

    def _look_after_storage(self, now: float | None = None) -> None:
        """The run folder looked at when due (at `now`, by default the present); each change of its problem said
        (an error, on screen) and logged."""
        self.folder.tick(time.monotonic() if now is None else now)
        for change in self.folder.take_changes():
            if change.problem is not None:
                self._error(change.problem)
            else:
                self._event("storage_recovered", problem=change.previous, seconds=round(change.seconds, 1),
                            dropped_lines=change.dropped)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether a torch error means the device (or the host, for the CPU) had no memory left for the step."""
    text = str(error)
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text \
        or "can't allocate memory" in text or "ALLOC_FAILED" in text


class _Mailbox:
    """The engine's command thread: reads commands as they arrive, also during a training step, and prepares them
    (`Engine.prepare`: a jump reaches the drawer at once); the trainer takes them in order between steps."""

    def __init__(self, engine: Engine, receive: Callable[[float], list[Any]]) -> None:
        self._engine, self._receive = engine, receive
        self._queue: queue.SimpleQueue[Prepared] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="engine-commands", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                for raw in self._receive(IDLE_WAIT):
                    prepared = self._engine.prepare(raw)
                    self._queue.put(prepared)
                    if prepared.command is not None and prepared.command.name == "shutdown":
                        return  # nothing after it counts (and a closed pipe would answer shutdown at once, forever)
        except BaseException as error:  # a bug: the trainer raises it, so the engine crashes rather than goes deaf
            self._failure = error
            self._queue.put(Prepared(None, "the command thread failed"))

    def take(self, timeout: float) -> list[Prepared]:
        """The commands prepared so far, waiting up to `timeout` s for the first."""
        taken = []
        try:
            taken.append(self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait())
            while True:
                taken.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        if self._failure is not None:
            raise self._failure
        return taken

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)


def _read_written(store: SnapshotStore, iteration: int) -> Snapshot:
    """A snapshot read from its file on the command thread; only where that fails (its write still queued) after
    waiting for the writer, which on a disk slower than the snapshots may take a while, so not before."""
    try:
        return SnapshotStore.read(store.path(iteration))
    except SnapshotError:
        store.flush()
        return SnapshotStore.read(store.path(iteration))
