"""The engine process's settings: training ([engine]), the walks it draws ([walk]) and how it draws them ([render]),
each a validated dataclass, and the checks they share with commands. No torch at import: presets and the fast
commands read this module without loading it."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any

from ..exits import TryAgain
from ..models.config import PRECISIONS
from ..validation import (ConfigError, check_choice, check_float, check_int, check_period,  # noqa: F401 (the engine's
                          check_seed, check_truncation)  # rules are built on them)

LOSSES = ("logit", "softplus", "log")
MAX_BATCH = 64
MAX_JOURNEY_MINUTES = 525600.0  # a year: an arc played over a whole exhibition
MAX_JOURNEY_ITERATIONS = 10**7
DEFAULT_LR = 1e-3  # for models that carry no journey rate of their own (rosinality files)
# The least silence that may count as a hang. One pass of the engine loop is a step, a probe and a snapshot's
# capture: seconds for full-size models on a CPU, and several times that on a loaded machine (5 s killed a healthy
# engine at a load of 7 on 2 cores).
MIN_HANG_SECONDS = 30.0


def check_lr(value: Any) -> float:
    """0 stands for "the model's own rate" (`starting_lr`); anything else is a learning rate in (0, 1]."""
    if value == 0 and not isinstance(value, bool):
        return 0.0
    try:
        return check_float("lr", value, 0.0, 1.0, low_open=True)
    except ConfigError:
        raise ConfigError(f"lr must be 0 (the model's own rate) or a number > 0 and <= 1, got {value!r}") from None


def starting_lr(configured: float, model_rate: float | None) -> float:
    """The configured rate, or where it is 0 the model's own journey rate (shipped with it), else DEFAULT_LR."""
    return configured or model_rate or DEFAULT_LR


def check_batch(value: Any) -> int:
    return check_int("batch", value, 1, MAX_BATCH)


def check_loss(value: Any) -> str:
    return check_choice("loss", value, LOSSES)


def check_rate(value: Any) -> float:
    return check_float("steps per second limit", value, 0.0)


def check_journey_minutes(value: Any) -> float:
    return check_float("journey_minutes", value, 0.0, MAX_JOURNEY_MINUTES)


def check_journey_iterations(value: Any) -> int:
    return check_int("journey_iterations", value, 1, MAX_JOURNEY_ITERATIONS)


def journey_pace(iterations: int, minutes: float) -> float:
    """Steps per second that play `iterations` over `minutes` of training; 0 (no pace) for 0 minutes."""
    return iterations / (60.0 * minutes) if minutes else 0.0


def check_device(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {value!r} (uncanny runs on NVIDIA GPUs "
                          "through CUDA, or on the CPU)")
    return value


class DeviceUnavailable(Exception):
    """The CUDA device asked for is not there; one line. An engine restarted after its GPU was lost treats either
    kind as a crash to retry with back-off, since the GPU may come back."""


class NoDeviceNow(DeviceUnavailable, TryAgain):
    """CUDA was asked for and no device answers now (at boot the driver may not be up yet): exit 75, retried."""


class NoSuchDevice(DeviceUnavailable, ConfigError):
    """A CUDA device this machine does not have (cuda:7 on a one-GPU box): exit 2, it never will."""


def check_device_present(name: str, cuda_devices: int) -> None:
    """DeviceUnavailable unless the device `name` (checked by check_device) is among `cuda_devices` CUDA devices."""
    if not name.startswith("cuda"):
        return
    if cuda_devices == 0:
        raise NoDeviceNow(f"device {name}: no CUDA device is available here now; check the GPU driver (nvidia-smi), "
                          "or use cpu or auto")
    index = int(name.partition(":")[2] or 0)
    if index >= cuda_devices:
        present = "cuda:0" if cuda_devices == 1 else f"cuda:0 .. cuda:{cuda_devices - 1}"
        raise NoSuchDevice(f"device {name}: this machine has {cuda_devices} CUDA device"
                           f"{'s' if cuda_devices > 1 else ''} ({present}); choose one of them, or auto")


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(name: str, cuda_devices: int | None = None) -> Any:
    """'auto' is cuda where there is one and cpu otherwise; a CUDA device that is not there is an error, not a
    fallback: ConfigError where this torch has no CUDA support at all (it never will), else DeviceUnavailable
    (check_device_present). `cuda_devices`: how many there are (default: what torch finds)."""
    import torch

    check_device(name)
    count = cuda_device_count() if cuda_devices is None else cuda_devices
    if name == "auto":
        return torch.device("cuda" if count else "cpu")
    if name.startswith("cuda") and count == 0 and torch.version.cuda is None:
        raise ConfigError(f"device {name}: no CUDA device is available here: this torch is a CPU-only build; "
                          "install a CUDA build of torch, or use cpu or auto")
    check_device_present(name, count)
    return torch.device(name)


def describe_device(device: Any) -> str:
    """The device as the HUD, status.json and OSC name it: "cuda:0 NVIDIA GeForce RTX 4090", "cpu"."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    index = torch.cuda.current_device() if device.index is None else device.index
    return f"cuda:{index} {torch.cuda.get_device_name(index)}"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or `taskset` narrows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def engine_threads(configured: int, cores: int | None = None, cuda: bool = False) -> int:
    """torch CPU threads for the engine process: `threads` where set; for 0, on a CUDA device 2 at most (the GPU
    does the work; more threads only contend with the display and ffmpeg), on the CPU every core this process may use
    but one, which stays free for the display (llvmpipe renders GL on the CPU) and ffmpeg; at least 1 (2 cores: 1)."""
    if configured:
        return configured
    cores = cores or usable_cores()
    return max(1, min(cores, 2) if cuda else cores - 1)


def check_threads(value: Any) -> int:
    """More threads than cores only adds switching: 10,000 of them loaded a 2-core machine to 8,400 and left the
    engine deaf to SIGTERM for minutes."""
    cores = usable_cores()
    try:
        return check_int("threads", value, 0, cores)
    except ConfigError:
        raise ConfigError(f"threads must be 0 (all cores but one) or 1 to {cores} (the cores this process may use), "
                          f"got {value!r}") from None


@dataclass(frozen=True)
class EngineConfig:
    """How the inverted fine-tuning runs. The first four and journey_minutes can also be changed live by commands."""

    loss: str = "logit"  # logit | softplus | log (see engine/losses.py)
    lr: float = 0.0  # synthesis lr, 0 = the model's own (starting_lr); the mapping network gets lr * mapping_lr_mult
    batch: int = 4  # the paper used 2, 4 and 8
    steps_per_second: float = 0.0  # 0 = as fast as the device goes; a cap beside the journey's pace
    journey_iterations: int = 2000  # the arc's length: the paper's journey from realism to collapse
    journey_minutes: float = 0.0  # the arc plays over this many minutes of training on any device; 0 = no pace
    mapping_lr_mult: float = 0.01
    seed: int = 0
    device: str = "auto"
    snapshot_every: int = 50
    keep_recent: int = 8  # snapshots kept at full density behind the newest; older ones are thinned
    memory_snapshots: int = 4  # held in RAM for instant rewind, iteration 0 included
    disk_budget_mb: float = 4096.0
    probe_size: int = 8  # fixed latents + noise scored for D and diversity
    probe_every: int = 10  # a probe costs about 2/3 of a step, so not every step by default
    collapse_fraction: float = 0.5  # diversity below this share of its iteration-0 value = collapse (see diversity.py)
    nan_lr_factor: float = 0.5  # lr multiplier after a non-finite rollback
    max_rollbacks: int = 8  # rollbacks in a row (no good snapshot between) before the engine pauses itself
    threads: int = 0  # torch CPU threads in the engine process; 0 = engine_threads' policy
    journal_mb: float = 64.0  # metrics.jsonl + events.jsonl stay within this (journal.py compacts them)
    hang_seconds: float = 60.0  # an engine alive but silent this long is killed and restarted (live/supervisor.py)

    def __post_init__(self) -> None:
        check_loss(self.loss)
        check_lr(self.lr)
        check_batch(self.batch)
        check_rate(self.steps_per_second)
        check_journey_iterations(self.journey_iterations)
        check_journey_minutes(self.journey_minutes)
        check_float("mapping_lr_mult", self.mapping_lr_mult, 0.0, 1.0)
        check_int("seed", self.seed, 0, 2**63 - 1)
        check_device(self.device)
        check_int("snapshot_every", self.snapshot_every, 1)
        check_int("keep_recent", self.keep_recent, 1)
        check_int("memory_snapshots", self.memory_snapshots, 2)
        check_float("disk_budget_mb", self.disk_budget_mb, 0.0, low_open=True)
        check_int("probe_size", self.probe_size, 2, 256)
        check_int("probe_every", self.probe_every, 1)
        check_float("collapse_fraction", self.collapse_fraction, 0.0, 1.0)
        check_float("nan_lr_factor", self.nan_lr_factor, 0.0, 1.0, low_open=True)
        check_int("max_rollbacks", self.max_rollbacks, 1)
        check_threads(self.threads)
        check_float("journal_mb", self.journal_mb, 0.01)
        check_float("hang_seconds", self.hang_seconds, MIN_HANG_SECONDS, 3600.0)

    def replace(self, **changes: Any) -> EngineConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class WalkConfig:
    keyframes: int = 6  # keyframes per loop
    period: float = 30.0  # seconds per loop
    truncation: float = 0.7  # 1 = none
    seed: int = 0
    grid: int = 3  # N for the N x N population view

    def __post_init__(self) -> None:
        check_int("keyframes", self.keyframes, 2, 256)
        check_period(self.period)
        check_truncation(self.truncation)
        check_seed(self.seed)
        check_int("grid", self.grid, 1, 8)


@dataclass(frozen=True)
class RenderConfig:
    share: float = 0.5  # the most of its time the frame drawer spends drawing while training runs flat out (it
    # also gets all the time a paced, paused or speed-limited training leaves)
    max_fps: float = 30.0  # most generator frames per second
    precision: str = "fp32"  # display frames only (models.gan.PRECISIONS); training stays fp32

    def __post_init__(self) -> None:
        check_float("share", self.share, 0.0, 0.95, low_open=True)
        check_float("max_fps", self.max_fps, 1.0, 240.0)
        check_choice("precision", self.precision, PRECISIONS)
