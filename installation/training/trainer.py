"""Progressive StyleGAN1 training (rosinality's train.py recipe at small widths), resumable at any moment.

Schedule: training starts at 8 px; every resolution stage lasts two phases of its `kimg_per_phase` thousand real
images (one value, or one per resolution): the new block fades in (alpha 0 -> 1) over the first, the second
stabilises (the first stage has no fade-in). The last stage goes on until `total_kimg` (default: the end of its
stabilising phase). A run can also begin from a stage file's weights and kimg (`--start-from`).
Loss: non-saturating with lazy R1 on reals; EMA generator (with ramp-up); x-flips; Adam betas (0, 0.99), mapping
lr x 0.01.
During a fade-in the real images fade in too (ProGAN), matching G's blend of its upsampled previous stage, and the
new block's to_rgb starts from zero (`Trainer.enter_stage`).

Determinism: every random draw (flips, z, noise) comes from one CPU torch.Generator whose state is saved, and
the data order is a function of (seed, images seen), so a run resumed from `checkpoint.pt` continues
bit-identically on the CPU (same torch build and thread count).
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..engine.engine import derive_seed
from ..images import grid, save_png, to_uint8
from ..messages import first_line, quiet_torch_load
from ..models import GAN, create_stylegan1, save_gan
from ..models.gan import build_generator, estimate_mean_latent
from ..models.stylegan1 import step_for_resolution
from ..storage import atomic_torch_save
from .data import TrainingError, batch_indices

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "uncanny-training-1"
START_RESOLUTION = 8  # rosinality's default init_size
DEFAULT_BATCH = 32
DEFAULT_KIMG_PER_PHASE = 150.0
EMA_HALF_LIFE_KIMG = 10.0  # StyleGAN2-ADA's ema_kimg
EMA_RAMPUP = 0.05  # ... and its ema_rampup: the half-life is at most this fraction of the images seen
SAMPLE_SEEDS = range(16)  # the same seeds `run_installation.py sample` uses by default
CHECKPOINT_EVERY_S = 300.0  # also save on a timer, so a hard kill loses at most this much


def stage_resolutions(resolution: int) -> tuple[int, ...]:
    first = min(START_RESOLUTION, resolution)
    return tuple(first * 2**i for i in range(step_for_resolution(resolution) - step_for_resolution(first) + 1))


def per_stage(stages: tuple[int, ...], pairs: tuple[tuple[int, Any], ...], default: Any, option: str
              ) -> tuple[tuple[int, Any], ...]:
    """(resolution, value) for every stage from per-resolution pairs such as `--batch`, where resolution 0 names
    the value for the rest."""
    spec = dict(pairs)
    unknown = sorted(set(spec) - set(stages) - {0})
    if unknown:
        raise TrainingError(f"{option} names {', '.join(map(str, unknown))} px, which is not a stage of this run "
                            f"({', '.join(map(str, stages))} px)")
    return tuple((r, spec.get(r, spec.get(0, default))) for r in stages)


def default_channels(resolution: int) -> tuple[int, ...]:
    """min(256, 2048 / r) per resolution from 4 px: 256,256,128,64,32 at 64 px.

    At 64 px that is G 3.4 M + D 4.0 M parameters: a 14.7 MB fp16 stage file, light enough for live CPU
    fine-tuning and under the 16 MiB a GPU job can hand back per file.
    """
    return tuple(min(256, 2048 // (4 * 2**i)) for i in range(step_for_resolution(resolution) + 1))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the weights; a resume must match all of it except `total_kimg`."""

    resolution: int = 64
    channels: tuple[int, ...] = (256, 256, 128, 64, 32)
    code_dim: int = 256
    n_mlp: int = 4
    kimg_per_phase: tuple[tuple[int, float], ...] = ()  # (resolution, kimg) pairs like batch
    batch: tuple[tuple[int, int], ...] = ()  # (resolution, batch) pairs, 0 = the rest; stored for every stage
    lr: float = 0.001
    r1: float = 10.0
    r1_every: int = 4
    seed: int = 0
    total_kimg: float | None = None  # None: the end of the last stage's stabilising phase

    def __post_init__(self) -> None:
        if len(self.channels) != step_for_resolution(self.resolution) + 1:
            raise TrainingError(f"--channels needs {step_for_resolution(self.resolution) + 1} widths (4 px up to "
                                f"{self.resolution} px), got {len(self.channels)}")
        # one canonical form: a value for every stage
        object.__setattr__(self, "batch", per_stage(self.stages, self.batch, DEFAULT_BATCH, "--batch"))
        object.__setattr__(self, "kimg_per_phase", per_stage(self.stages, self.kimg_per_phase, DEFAULT_KIMG_PER_PHASE,
                                                             "--kimg-per-phase"))

    @property
    def stages(self) -> tuple[int, ...]:
        return stage_resolutions(self.resolution)

    @property
    def stage_images(self) -> tuple[int, ...]:
        """Real images per stage: two phases each (fade-in, then stabilise; the first stage only stabilises)."""
        return tuple(2 * max(1, round(kimg * 1000)) for _, kimg in self.kimg_per_phase)

    @property
    def total_images(self) -> int:
        if self.total_kimg is None:
            return sum(self.stage_images)
        return max(1, round(self.total_kimg * 1000))

    def batch_for(self, resolution: int) -> int:
        return dict(self.batch)[resolution]

    def schedule(self, images_seen: int) -> tuple[int, float]:
        """(stage index, alpha) for the batch that starts after `images_seen` real images."""
        start = 0
        for stage, length in enumerate(self.stage_images):
            if images_seen < start + length or stage == len(self.stage_images) - 1:
                break
            start += length
        within = images_seen - start
        return stage, 1.0 if stage == 0 else min(1.0, within / (length // 2))

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers, loadable with weights_only=True."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["batch"], d["kimg_per_phase"] = [list(p) for p in self.batch], [list(p) for p in self.kimg_per_phase]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**{**d, "channels": tuple(d["channels"]), "batch": tuple(tuple(p) for p in d["batch"]),
                      "kimg_per_phase": tuple(tuple(p) for p in d["kimg_per_phase"])})


def describe_setting(name: str, value: Any) -> str:
    """How a setting is written on the command line, for refusal messages."""
    if name == "channels":
        return ",".join(map(str, value))
    if name in ("batch", "kimg_per_phase"):
        return ",".join(f"{r}:{v:g}" for r, v in value)
    return str(value)


def fade_in_reals(real: Tensor, alpha: float) -> Tensor:
    """ProGAN's fade-in of the real images: while a new block fades in (alpha < 1), G's picture is mostly its
    previous stage's, nearest-upsampled, so the reals are blended the same way; otherwise D can tell real from
    fake by blockiness alone during the fade-in."""
    if alpha >= 1:
        return real
    coarse = F.interpolate(F.avg_pool2d(real, 2), scale_factor=2, mode="nearest")
    return torch.lerp(coarse, real, alpha)


def requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


class Trainer:
    """Owns G, EMA G, D, both optimisers, the RNG and the progress counters; `checkpoint.pt` holds them all."""

    def __init__(self, config: TrainConfig, images: np.ndarray, data_facts: dict[str, Any], out: Path,
                 device: torch.device | str = "cpu", resumed: dict[str, Any] | None = None,
                 start_from: tuple[Path, dict[str, Any]] | None = None):
        self.config, self.data_facts, self.out = config, data_facts, Path(out)
        self.device = torch.device(device)
        if images.shape[1] != config.resolution:
            raise TrainingError(f"the images are {images.shape[1]} px but --resolution is {config.resolution}")
        self.images = torch.from_numpy(images).to(self.device)  # uint8: 12 KiB per 64 px image
        gan = create_stylegan1(config.channels, config.code_dim, config.n_mlp, seed=config.seed)
        self.g_config, self.d_config = gan.g_config, gan.d_config
        self.g, self.d = gan.generator.to(self.device), gan.discriminator.to(self.device)
        self.g_ema = build_generator("stylegan1", self.g_config).to(self.device).eval()
        self.g_ema.load_state_dict(self.g.state_dict())
        requires_grad(self.g_ema, False)
        self.g_optim = torch.optim.Adam([
            {"params": self.g.generator.parameters()},
            {"params": self.g.style.parameters(), "lr": config.lr * 0.01},  # rosinality's mapping lr
        ], lr=config.lr, betas=(0.0, 0.99))
        self.d_optim = torch.optim.Adam(self.d.parameters(), lr=config.lr, betas=(0.0, 0.99))
        self.rng = torch.Generator().manual_seed(config.seed)
        self.images_seen = self.iteration = 0
        self.elapsed_s = 0.0
        self.started_from: dict[str, Any] | None = None  # the stage file a --start-from run began with
        self.losses: dict[str, Tensor] = {}
        if resumed is not None:
            self._restore(resumed)
        elif start_from is not None:
            self._start_from(*start_from)

    @property
    def images_trained(self) -> int:
        """Real images shown in this run (a --start-from run counts from its file's kimg)."""
        return self.images_seen - (self.started_from or {}).get("images", 0)

    # ----------------------------------------------------------------------------------- checkpointing

    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "data": dict(self.data_facts),
            "generator": self.g.state_dict(),
            "g_running": self.g_ema.state_dict(),
            "discriminator": self.d.state_dict(),
            "g_optimizer": self.g_optim.state_dict(),
            "d_optimizer": self.d_optim.state_dict(),
            "rng": self.rng.get_state(),
            "images_seen": self.images_seen,
            "iteration": self.iteration,
            "elapsed_s": self.elapsed_s,
            "started_from": self.started_from,
        }

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.g.load_state_dict(ckpt["generator"])
        self.g_ema.load_state_dict(ckpt["g_running"])
        self.d.load_state_dict(ckpt["discriminator"])
        self.g_optim.load_state_dict(ckpt["g_optimizer"])
        self.d_optim.load_state_dict(ckpt["d_optimizer"])
        self.rng.set_state(ckpt["rng"])
        self.images_seen, self.iteration = int(ckpt["images_seen"]), int(ckpt["iteration"])
        self.elapsed_s = float(ckpt["elapsed_s"])
        self.started_from = ckpt.get("started_from")

    @torch.no_grad()
    def _start_from(self, path: Path, stage_file: dict[str, Any]) -> None:
        """G, EMA G and D from a stage file (see `read_stage_file`), at the kimg it was saved; the optimisers start
        afresh (Adam's moments re-estimate within a few hundred steps) and the RNG is seeded from (seed, kimg)."""
        try:  # fp16 tensors are copied into the float32 weights
            self.g.load_state_dict(stage_file["generator"])
            self.g_ema.load_state_dict(stage_file["g_ema"])
            self.d.load_state_dict(stage_file["discriminator"])
        except (RuntimeError, TypeError, AttributeError) as error:
            raise TrainingError(f"{path}: its weights do not fit the settings it records "
                                f"({first_line(error)}); pass a stage file written by train") from None
        self.images_seen = round(stage_file["meta"]["kimg"] * 1000)
        self.rng.manual_seed(derive_seed(self.config.seed, self.images_seen))
        self.started_from = {"file": path.name, "images": self.images_seen}
        stage = self.config.schedule(self.images_seen)[0]
        if stage > self.config.stages.index(stage_file["resolution"]):
            self.enter_stage(stage)  # saved at the end of a stage: the next block has not been silenced yet

    def save_checkpoint(self) -> None:
        atomic_torch_save(self.state(), self.out / CHECKPOINT_NAME)

    def save_stage(self, stage: int) -> Path:
        """EMA G, raw G and D as trained so far (fp16, own format, no optimiser state), usable at this stage's size.

        The raw G rides along (a third of the file) so the installation can fine-tune either generator
        (`--raw-generator`), as it can with rosinality's train_step files.
        """
        resolution = self.config.stages[stage]
        trained = tuple(4 * 2**i for i in range(step_for_resolution(resolution) + 1))
        gan = GAN("stylegan1", self.g_ema, self.d, resolution, self.config.code_dim,
                  estimate_mean_latent(self.g_ema, self.config.code_dim), self.g_config, self.d_config,
                  trained_resolutions=trained)
        path = self.out / f"stage-{resolution}px.pt"
        meta = {"kimg": self.images_seen / 1000, "training": self.config.to_dict(), "data": dict(self.data_facts)}
        if self.started_from is not None:
            meta["started_from"] = dict(self.started_from)
        save_gan(gan, path, raw_generator=self.g, half=True, meta=meta)
        return path

    @torch.no_grad()
    def enter_stage(self, stage: int) -> None:
        """Zero the new block's to_rgb (in G and EMA G) before it fades in.

        A randomly initialised to_rgb paints random colours at about twice the contrast of the data into the
        picture as alpha grows, faster than a fade-in of a few kimg can train them away: every stage broke its
        colours, and at 64 px that wiped what the earlier stages had learned. From zero, the new block starts
        silent and its read-out grows only as fast as D asks for it (the SkipInit / ReZero idea).
        """
        step = step_for_resolution(self.config.stages[stage])
        for g in (self.g, self.g_ema):
            for p in g.generator.to_rgb[step].parameters():
                p.zero_()

    @torch.no_grad()
    def save_samples(self) -> Path:
        """The EMA G on fixed seeds at the current stage, scaled up to the final size so grids line up."""
        stage, alpha = self.config.schedule(self.images_seen)
        step = step_for_resolution(self.config.stages[stage])
        tiles = []
        for seed in SAMPLE_SEEDS:
            rng = torch.Generator().manual_seed(seed)
            z = torch.randn(1, self.config.code_dim, generator=rng).to(self.device)
            noise = self.g_ema.make_noise(1, step, generator=rng, device=self.device)
            tiles.append(self.g_ema(z, noise=noise, step=step, alpha=alpha))
        images = F.interpolate(torch.cat(tiles), size=self.config.resolution, mode="nearest")
        path = self.out / "samples" / f"kimg{self.images_seen // 1000:06d}.png"
        save_png(path, grid(to_uint8(images), columns=8))
        return path

    # ---------------------------------------------------------------------------------------- training

    def _real_batch(self, size: int, resolution: int, alpha: float) -> Tensor:
        index = batch_indices(len(self.images), self.config.seed, self.images_seen, size)
        real = self.images[torch.from_numpy(index).to(self.device)].permute(0, 3, 1, 2).float() / 127.5 - 1
        if resolution < self.config.resolution:
            real = F.avg_pool2d(real, self.config.resolution // resolution)
        real = fade_in_reals(real, alpha)
        flip = (torch.rand(size, generator=self.rng) < 0.5).to(self.device)
        return torch.where(flip[:, None, None, None], real.flip(3), real)

    def _latents(self, size: int, step: int) -> tuple[Tensor, list[Tensor]]:
        z = torch.randn(size, self.config.code_dim, generator=self.rng).to(self.device)
        return z, self.g.make_noise(size, step, generator=self.rng, device=self.device)

    def train_step(self) -> None:
        """One D step (with R1 every `r1_every` iterations) and one G step on the next batch of the stream."""
        cfg = self.config
        stage, alpha = cfg.schedule(self.images_seen)
        resolution = cfg.stages[stage]
        step, size = step_for_resolution(resolution), cfg.batch_for(resolution)
        real = self._real_batch(size, resolution, alpha)  # the schedule gives the first stage alpha 1

        requires_grad(self.g, False)
        requires_grad(self.d, True)
        z, noise = self._latents(size, step)
        with torch.no_grad():
            fake = self.g(z, noise=noise, step=step, alpha=alpha)
        do_r1 = cfg.r1 > 0 and self.iteration % cfg.r1_every == 0
        real.requires_grad_(do_r1)
        real_logits = self.d(real, step=step, alpha=alpha)
        d_loss = F.softplus(-real_logits).mean() + F.softplus(self.d(fake, step=step, alpha=alpha)).mean()
        if do_r1:
            (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            penalty = grad.square().flatten(1).sum(1).mean()
            d_loss = d_loss + penalty * (cfg.r1 / 2 * cfg.r1_every)  # lazy: scaled by the interval
            self.losses["R1"] = penalty.detach()
        self.d_optim.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optim.step()

        requires_grad(self.g, True)
        requires_grad(self.d, False)
        z, noise = self._latents(size, step)
        g_loss = F.softplus(-self.d(self.g(z, noise=noise, step=step, alpha=alpha), step=step, alpha=alpha)).mean()
        self.g_optim.zero_grad(set_to_none=True)  # untouched blocks keep grad None, so Adam leaves them at init
        g_loss.backward()
        self.g_optim.step()
        # StyleGAN2-ADA's EMA ramp-up: a short half-life early on, so a run of few kimg (and a block that has
        # just faded in) is not averaged with the weights it started from.
        half_life = max(size, min(EMA_HALF_LIFE_KIMG * 1000, EMA_RAMPUP * self.images_seen))
        decay = 0.5 ** (size / half_life)
        with torch.no_grad():
            for p_ema, p in zip(self.g_ema.parameters(), self.g.parameters()):
                p_ema.lerp_(p, 1 - decay)

        self.losses.update(D=d_loss.detach(), G=g_loss.detach())
        self.images_seen += size
        self.iteration += 1

    def run(self, max_minutes: float | None = None, max_steps: int | None = None,
            sample_every_kimg: float = 20.0, started: float | None = None) -> str:
        """Train until `total_kimg`, the time or step limit of this chunk, or SIGINT/SIGTERM; returns why it stopped.

        The checkpoint is saved at every stop, sample tick, stage end and every CHECKPOINT_EVERY_S.
        """
        cfg = self.config
        started = time.monotonic() if started is None else started
        deadline = started + max_minutes * 60 if max_minutes is not None else math.inf
        signalled: list[int] = []
        previous = {s: signal.signal(s, lambda n, _f: signalled.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
        progress = Progress(cfg.total_images, self.images_seen)
        sample_every = max(1, round(sample_every_kimg * 1000))
        try:
            if self.iteration == 0:  # also the first picture of a --start-from run
                self.save_samples()
            last_save = time.monotonic()
            self.save_checkpoint()  # also times a save, which the deadline has to leave room for
            save_s, step_s, steps = time.monotonic() - last_save, 0.0, 0

            def why_stop() -> str | None:
                if self.images_seen >= cfg.total_images:
                    return "finished"
                if signalled:
                    return f"stopped by {signal.Signals(signalled[0]).name}"
                if max_steps is not None and steps >= max_steps:
                    return f"stopped after {steps} steps (--max-steps)"
                if steps and time.monotonic() + 2 * step_s + save_s > deadline:
                    return f"stopped before the {max_minutes:g}-minute limit (--max-minutes)"
                return None

            while (reason := why_stop()) is None:
                now = time.monotonic()
                before, (stage, _) = self.images_seen, cfg.schedule(self.images_seen)
                self.train_step()
                steps += 1
                step_s = time.monotonic() - now
                self.elapsed_s += step_s
                done_stage = cfg.schedule(self.images_seen)[0] > stage
                sampled = before // sample_every < self.images_seen // sample_every
                if done_stage:
                    self.save_stage(stage)
                    self.enter_stage(stage + 1)
                if sampled:
                    self.save_samples()
                if done_stage or sampled or time.monotonic() - last_save > CHECKPOINT_EVERY_S:
                    tick = time.monotonic()
                    self.save_checkpoint()
                    last_save = time.monotonic()
                    save_s = last_save - tick
                progress.update(self, force=False)
            if reason == "finished":
                self.save_stage(cfg.schedule(cfg.total_images - 1)[0])
                self.save_samples()
            self.save_checkpoint()
            progress.update(self, force=True)
            return reason
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


class Progress:
    """A one-line text progress bar on stderr: redrawn in place on a terminal, a new line a minute otherwise."""

    def __init__(self, total_images: int, start_images: int):
        self.total, self.start_images = total_images, start_images
        self.start = self.last = time.monotonic()
        self.tty = sys.stderr.isatty()

    def update(self, trainer: Trainer, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.5 if self.tty else 60.0):
            return
        self.last = now
        seen = trainer.images_seen
        stage, alpha = trainer.config.schedule(min(seen, self.total - 1))
        done = min(1.0, seen / self.total)
        bar = "#" * round(24 * done) + "-" * (24 - round(24 * done))
        kimg_done = (seen - self.start_images) / 1000
        rate = (now - self.start) / kimg_done if kimg_done > 0 else math.nan
        eta = rate * (self.total - seen) / 1000
        losses = " ".join(f"{k} {v.item():.3f}" for k, v in trainer.losses.items())
        line = (f"train [{bar}] {seen / 1000:.1f}/{self.total / 1000:.1f} kimg | "
                f"{trainer.config.stages[stage]}px alpha {alpha:.2f} | {rate:.2f} s/kimg | {losses} | "
                f"eta {_duration(eta)}")
        print(("\r" if self.tty else "") + line, end="" if self.tty and not force else "\n",
              file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, _ = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def read_checkpoint(out: Path) -> dict[str, Any] | None:
    """The training checkpoint in `out`, or None for a fresh run."""
    path = Path(out) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        with quiet_torch_load():
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, corrupt or not ours: never guess
        raise TrainingError(f"{path}: cannot read this training checkpoint ({first_line(error)}); "
                            "delete it to start over") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not an uncanny training checkpoint ({CHECKPOINT_FORMAT}); "
                            "pick another --out")
    return ckpt


def read_stage_file(path: Path) -> dict[str, Any]:
    """A stage file of `train` (stage-<R>px.pt, or the shipped default.pt) with what a run needs to go on from it."""
    try:
        with quiet_torch_load():
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise TrainingError(f"{path}: cannot read this file ({first_line(error)}); pass a "
                            "stage-<R>px.pt written by train") from None
    meta = ckpt.get("meta") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("training"), dict) or "kimg" not in meta:
        raise TrainingError(f"{path}: not a stage file written by train (it records no training settings); "
                            "pass a stage-<R>px.pt or the embedded default.pt")
    missing = [name for name in ("generator", "g_ema", "discriminator") if ckpt.get(name) is None]
    if missing:
        raise TrainingError(f"{path}: holds no {' or '.join(missing)} weights, which going on training needs; "
                            "pass a stage-<R>px.pt that train wrote (the shipped default-<R>px.pt drop the raw G)")
    kimg = meta["kimg"]
    if isinstance(kimg, bool) or not isinstance(kimg, (int, float)) or not math.isfinite(kimg) or kimg < 0:
        raise TrainingError(f"{path}: records {kimg!r} kimg, not a number of images; pass a stage file from train")
    try:
        config = TrainConfig.from_dict(meta["training"])
    except (KeyError, TypeError, ValueError, TrainingError) as error:
        raise TrainingError(f"{path}: records training settings this release cannot use ({error}); retrain with it, "
                            "or pass another stage file") from None
    if ckpt.get("resolution") not in config.stages:
        raise TrainingError(f"{path}: its resolution {ckpt.get('resolution')!r} is not a stage of the run it records; "
                            "pass a stage file written by train")
    return ckpt


def resolve_config(requested: dict[str, Any], ckpt: dict[str, Any] | None, path: Path,
                   advice: str = "leave it out to resume, or use another --out") -> TrainConfig:
    """Settings left out (None) come from the checkpoint on resume, else the defaults; given ones must match."""
    given = {k: v for k, v in requested.items() if v is not None}
    if ckpt is None:
        if "channels" not in given:
            given["channels"] = default_channels(given.get("resolution", TrainConfig.resolution))
        return TrainConfig(**given)
    stored = TrainConfig.from_dict(ckpt["config"])
    for f in fields(TrainConfig):
        if f.name not in given or f.name == "total_kimg":
            continue
        value = given[f.name]
        if f.name in ("batch", "kimg_per_phase"):
            value = getattr(TrainConfig(**{**asdict(stored), f.name: value}), f.name)  # the canonical form
        if value != getattr(stored, f.name):
            option = "--" + f.name.replace("_", "-")
            raise TrainingError(
                f"{path} was started with {option} {describe_setting(f.name, getattr(stored, f.name))} but this run "
                f"asks for {describe_setting(f.name, value)}; {advice}")
    return TrainConfig(**{**asdict(stored), "total_kimg": given.get("total_kimg", stored.total_kimg)})


def check_data(facts: dict[str, Any], ckpt: dict[str, Any], path: Path, data: Path) -> None:
    old = ckpt["data"]
    if (old["count"], old["fingerprint"]) != (facts["count"], facts["fingerprint"]):
        raise TrainingError(f"{path} was trained on other images ({old['count']} images, fingerprint "
                            f"{old['fingerprint']}) than --data {data} ({facts['count']} images, fingerprint "
                            f"{facts['fingerprint']}); pass the same data, or use another --out")
