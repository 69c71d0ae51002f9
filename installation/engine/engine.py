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
`between_steps(engine)` hook (where the display renders frames from `engine.gan`) and steps until told to stop.

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
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..models import GAN
from .commands import Command, CommandError, parse_command
from .config import ConfigError, EngineConfig, starting_lr
from .errors import EngineError, EngineRefused, RunFolderError  # noqa: F401 (raised from here since the start)
from .losses import inverted_loss
from .runfolder import RunFolder, check_run_folder, model_facts  # noqa: F401 (the live run and tests use them)
from .similarity import DIVERSITY_MEASURE, diversity
from .snapshots import Snapshot, SnapshotError, SnapshotStore, clone_tree
from .state import EngineState

BETAS = (0.0, 0.99)  # rosinality train.py, and FreezeD fine-tuning the same checkpoints
IDLE_WAIT = 0.02  # seconds between hook calls while paused or throttled (the display keeps drawing)
PUBLISH_EVERY = 0.05  # at most 20 state updates a second, plus one after every command or event
ERRORS_KEPT = 8
PROBE_STREAM, STEP_STREAM = 1, 2
CLEAN_ENDS = ("stop", "abandoned")  # the last event of a session that ended itself

Hook = Callable[["Engine"], None]


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
                 previous_death: str | None = None) -> None:
        if gan.discriminator is None:
            raise EngineError("this GAN has no discriminator, which the fine-tuning needs")
        self.gan, self.config, self.run_dir, self.between_steps = gan, config, Path(run_dir), between_steps
        self.device = gan.device
        # live settings, changed by commands
        self.lr, self.loss_name, self.batch = starting_lr(config.lr, gan.journey_lr), config.loss, config.batch
        self.steps_per_second = config.steps_per_second
        self.seed, self.probe_size = config.seed, config.probe_size
        self.iteration = self.branch = 0
        self.session = 1
        self._back_target: int | None = None  # where the last `back` went, while no newer snapshot exists
        self.paused = self.stopping = self.collapsed = False
        self.failure: str | None = None
        self.errors: deque[str] = deque(maxlen=ERRORS_KEPT)
        self.error_count = self.rollbacks = self.commands = 0
        self.heartbeat = 0  # passes of the run loop
        self.last: dict[str, Any] = {}  # newest loss, batch_d, grad_norm, probe_d, diversity
        self.diversity0 = self.probe_d0 = None
        self._rollbacks_in_row = 0
        self._fault: str | None = None
        self._step_times: deque[float] = deque(maxlen=20)
        self._next_step_at = 0.0
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
                self.folder.write_info({**info, "sessions": self.session})
                self._record_death(previous_death)
                for name in torn:
                    self._event("torn_line_dropped", file=name)
                self._resume(info)
            elif self.store.iterations():
                raise RunFolderError(f"{self.run_dir}: holds snapshots but no run.json; choose an empty run folder")
            else:
                self._record_death(previous_death)
                self._start_new()
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
                "created": time.time(), "sessions": self.session}
        self.folder.write_info(info)
        self._write_metrics({"iteration": 0, "branch": 0, "session": self.session, "time": time.time(),
                             "loss": None, "batch_d": None,
                             "grad_norm": None, "lr": self.lr, "objective": self.loss_name, "batch": self.batch,
                             "probe_d": self.probe_d0, "diversity": self.diversity0})
        self.snapshot()
        self._event("start", device=str(self.device), source=self.gan.source, seed=self.seed)

    def _resume(self, info: dict[str, Any]) -> None:
        self.seed, self.probe_size = int(info["seed"]), int(info["probe_size"])
        self.diversity0, self.probe_d0 = info["diversity0"], info["probe_d0"]
        self._make_probe()
        if info.get("diversity_measure") != DIVERSITY_MEASURE:
            self._remeasure_diversity0(info)
        snapshot = self._load_at_or_before(math.inf, RunFolderError)
        self._restore(snapshot, settings=True)
        self.branch = snapshot.branch
        self._load_at_or_before(0, RunFolderError)  # keeps iteration 0 in memory: reset must be instant
        self._probe()
        self._event("resume", device=str(self.device), snapshot=snapshot.iteration, session=self.session)

    def _remeasure_diversity0(self, info: dict[str, Any]) -> None:
        """A run folder from a release with another diversity measure: its iteration-0 value, measured anew from the
        iteration-0 snapshot, so the collapse line compares like with like."""
        self._restore(self._load_at_or_before(0), settings=False)
        self.diversity0 = None  # no collapse verdict against a value in the old measure
        if self._probe():
            old, self.diversity0 = info["diversity0"], self.last["diversity"]
            self.folder.write_info({**info, "diversity0": self.diversity0, "diversity_measure": DIVERSITY_MEASURE})
            self._event("diversity_remeasured", measure=DIVERSITY_MEASURE, old=old, diversity0=self.diversity0)

    def _make_probe(self) -> None:
        seed = derive_seed(self.seed, PROBE_STREAM)
        self._probe_z, self._probe_noise = fixed_latents(self.gan, self.probe_size, seed)

    # ------------------------------------------------------------------------------------------------ stepping

    def step(self) -> dict[str, Any] | None:
        """One optimiser step. Returns its metrics line, or None when the non-finite guard rolled it back."""
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
        for message in self.store.take_errors():
            self._error(message)
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
        """Store the current G weights and optimiser state (no-op if this iteration already has a snapshot)."""
        if self.iteration in self.store.iterations():
            return
        start = time.perf_counter()
        state = {k: v.detach().to("cpu", copy=True) for k, v in self.gan.generator.state_dict().items()}
        self.store.add(Snapshot(self.iteration, self.branch, state, clone_tree(self.optimizer.state_dict()),
                                {"lr": self.lr, "loss": self.loss_name, "batch": self.batch}))
        self.store.last_capture_seconds = time.perf_counter() - start
        self._rollbacks_in_row = 0
        self._back_target = None  # a new snapshot: the next `back` counts from here
        self._event("snapshot")

    def rewind(self, iteration: int) -> int:
        """Go back to the nearest snapshot at or before `iteration`; returns the iteration restored."""
        if iteration < 0 or iteration > self.iteration:
            raise CommandError(f"cannot rewind to {iteration}: the journey is at iteration {self.iteration}; "
                               f"choose 0..{self.iteration}")
        return self._go_back(iteration, "rewind", requested=iteration)

    def reset(self) -> None:
        """Back to iteration 0, the unmodified model (the live settings stay as they are)."""
        self._go_back(0, "reset")

    def back(self) -> int:
        """One snapshot further back: the newest before the current iteration, or, while the journey has not
        reached a new snapshot since the last `back`, the one before that; iteration 0 at the most."""
        below = self.iteration if self._back_target is None else min(self.iteration, self._back_target)
        earlier = [it for it in self.store.iterations() if it < below]
        target = self._go_back(max(earlier, default=0), "back")
        self._back_target = target
        return target

    def _go_back(self, iteration: float, event: str, **fields: Any) -> int:
        snapshot = self._load_at_or_before(iteration)
        self.store.discard_after(snapshot.iteration)  # the abandoned future; events.jsonl keeps its story
        branch = max(self.branch, snapshot.branch) + 1
        self._restore(snapshot, settings=False)
        self.branch = branch
        self._probe()
        self._event(event, to=snapshot.iteration, lr=self.lr, **fields)
        return snapshot.iteration

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

    def apply(self, raw: Command | str | dict | tuple) -> Command:
        """Validate and apply one command between steps; raises CommandError (and changes nothing) when bad."""
        command = parse_command(raw)
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
            case "lr", lr:
                self.lr = starting_lr(lr, self.gan.journey_lr)
                self._set_lr(self.lr)
            case "loss", name:
                self.loss_name = name
            case "batch", batch:
                self.batch = batch
            case "rewind", iteration:
                self.rewind(iteration)
            case "reset", _:
                self.reset()
            case "back", _:
                self.back()
            case "snapshot", _:
                self.snapshot()
            case "shutdown", _:
                self.stopping = True
            case "fault", kind:
                self._fault = kind
            case "render", settings:
                configure = getattr(self.between_steps, "configure", None)
                if configure is None:
                    raise CommandError("render: nothing draws frames in this engine")
                try:
                    configure(settings)
                except (ValueError, ConfigError) as error:
                    raise CommandError(f"render: {error}") from None
        self._event("command", command=command.name, value=command.value)
        return command

    def submit(self, raw: Any) -> bool:
        """`apply`, recording a rejection in `errors` instead of raising: the engine keeps running."""
        self.commands += 1
        try:
            self.apply(raw)
            return True
        except CommandError as error:
            self._error(f"rejected command: {error}")
            return False

    # -------------------------------------------------------------------------------------------------- loop

    def run(self, receive: Callable[[float], list[Any]] | None = None,
            publish: Callable[[EngineState], None] | None = None, until: int | None = None) -> None:
        """Loop: commands, the between-steps hook, a step; until shutdown, `until` iterations, or (with no
        command source to resume it) a pause. `receive(timeout)` returns the commands that arrived within
        `timeout` seconds; `publish(state)` gets the state at most every PUBLISH_EVERY s and after changes."""
        last_publish = 0.0
        while True:
            self.heartbeat += 1  # every pass, paused or not: the supervisor's sign of life (live/supervisor.py)
            wait = self._wait()
            if receive is not None:
                for raw in receive(wait):
                    self.submit(raw)
            elif wait:
                time.sleep(wait)
            if self.between_steps is not None:
                self.between_steps(self)
            self._look_after_storage()
            done = (self.stopping or (until is not None and self.iteration >= until)
                    or (receive is None and self.paused))
            if not done and not self.paused and time.monotonic() >= self._next_step_at:
                self._next_step_at = time.monotonic() + (1 / self.steps_per_second if self.steps_per_second else 0)
                self.step()
            if publish is not None and (done or self._dirty or time.monotonic() - last_publish >= PUBLISH_EVERY):
                publish(self.state())
                last_publish, self._dirty = time.monotonic(), False
            if done:
                return

    def _wait(self) -> float:
        if self.paused:
            return IDLE_WAIT
        return min(IDLE_WAIT, max(0.0, self._next_step_at - time.monotonic()))

    def state(self) -> EngineState:
        """What the caller shows: progress, numbers, snapshots, errors (see state.py)."""
        times = self._step_times
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        status = ("stopped" if self._closed else "stopping" if self.stopping else "failed" if self.failure
                  else "paused" if self.paused else "running")
        return EngineState(
            status=status, iteration=self.iteration, branch=self.branch, session=self.session,
            objective=self.loss_name, lr=self.lr, batch=self.batch, limit=self.steps_per_second,
            steps_per_second=rate, **{k: self.last.get(k) for k in ("loss", "batch_d", "grad_norm", "probe_d",
                                                                      "diversity")},
            diversity0=self.diversity0, probe_d0=self.probe_d0, collapsed=self.collapsed,
            snapshots=tuple(self.store.iterations()), snapshot_seconds=self.store.last_capture_seconds,
            snapshot_write_seconds=self.store.last_write_seconds, rollbacks=self.rollbacks,
            errors=tuple(self.errors), error_count=self.error_count, failure=self.failure,
            storage=self.folder.problem,
            commands=self.commands, heartbeat=self.heartbeat, device=str(self.device),
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
        if snapshot:
            self.snapshot()
        self.store.flush()
        for message in self.store.take_errors():
            self._error(message)
        self.store.close()
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

    def _look_after_storage(self) -> None:
        """The run folder looked at when due; each change of its problem said (an error, on screen) and logged."""
        self.folder.tick(time.monotonic())
        for change in self.folder.take_changes():
            if change.problem is not None:
                self._error(change.problem)
            else:
                self._event("storage_recovered", problem=change.previous, seconds=round(change.seconds, 1),
                            dropped_lines=change.dropped)
