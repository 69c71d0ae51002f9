"""One face for every supported StyleGAN: generate, map, synthesise, discriminate.

The engine, the latent walks and the display only talk to `GAN`; which upstream architecture sits behind it
(rosinality StyleGAN1 with its `step`/`alpha`, StyleGAN2 with its list-of-styles call, or NVlabs' StyleGAN2-ADA
and StyleGAN3 with their class label and separate mapping/synthesis networks) stays in here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..validation import check_choice
from .config import PRECISIONS
from . import stylegan1, stylegan2, stylegan2_ada, stylegan3

NVLABS_ARCHS = ("stylegan2-ada", "stylegan3")
ARCHS = ("stylegan1", "stylegan2", *NVLABS_ARCHS)
# Display precision (`[render] precision`): reduced precision is for frames only; training stays fp32.
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512-BF16 (Linux cpuinfo flags): without them CPU bf16 is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """What `precision` means on `device`: "fp32", "bf16" or "fp16".

    "auto" is the fastest safe choice: bf16 on CUDA where supported (fp32's range, so no overflow) else fp16;
    bf16 on a CPU with AMX / AVX-512-BF16; fp32 on other CPUs. fp16 exists only on CUDA (fp32 elsewhere).
    """
    check_choice("precision", precision, PRECISIONS)  # a ConfigError, a ValueError
    cuda = torch.device(device).type == "cuda"
    if precision == "auto":
        if cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32" if precision == "fp16" and not cuda else precision


def host_precision(precision: str) -> str:
    """What `precision` draws in on this CPU for a picture needed at once (the first one, drawn by the display
    process): bf16 only where the CPU has it natively, fp32 otherwise (emulated bf16 is many times slower)."""
    return "bf16" if resolve_precision(precision, "cpu") == "bf16" and cpu_has_fast_bf16() else "fp32"


@contextmanager
def autocast_frames(precision: str, device: torch.device | str) -> Iterator[str]:
    """Run the enclosed generator calls in `precision` (torch.autocast); yields the precision resolved."""
    resolved = resolve_precision(precision, device)
    device_type = torch.device(device).type
    with nullcontext() if resolved == "fp32" else torch.autocast(device_type, dtype=_DTYPES[resolved]):
        yield resolved


def build_generator(arch: str, config: dict[str, Any]) -> nn.Module:
    if arch == "stylegan1":
        return stylegan1.StyledGenerator(config["code_dim"], config["n_mlp"], config["channels"])
    if arch == "stylegan2-ada":
        return stylegan2_ada.Generator(config)
    if arch == "stylegan3":
        return stylegan3.Generator(config)
    return stylegan2.Generator(config["size"], config["style_dim"], config["n_mlp"], config["channel_multiplier"])


def build_discriminator(arch: str, config: dict[str, Any]) -> nn.Module:
    if arch == "stylegan1":
        return stylegan1.Discriminator(config["channels"], config["from_rgb_activate"])
    if arch in NVLABS_ARCHS:  # StyleGAN3 files carry StyleGAN2-ADA's discriminator
        return stylegan2_ada.Discriminator(config)
    return stylegan2.Discriminator(config["size"], config["channel_multiplier"])


@dataclass(eq=False)
class GAN:
    """A generator to fine-tune and display, its discriminator (or None) and what is known about them."""

    arch: str
    generator: nn.Module
    discriminator: nn.Module | None
    resolution: int
    latent_dim: int  # size of z
    mean_latent: Tensor  # (1, w size): the centre of w space that truncation pulls towards
    g_config: dict[str, Any]
    d_config: dict[str, Any] | None = None
    format: str = "uncanny"
    source: str = ""
    trained_resolutions: tuple[int, ...] = ()
    journey_lr: float | None = None  # the learning rate that plays the paper's arc on this model, where measured
    class_index: int = 0  # the class a conditional (NVlabs c_dim > 0) model draws and is judged as

    @property
    def device(self) -> torch.device:
        return self.mean_latent.device

    @property
    def step(self) -> int:
        """StyleGAN1's progression step for the chosen resolution."""
        return stylegan1.step_for_resolution(self.resolution)

    def to(self, device: torch.device | str) -> GAN:
        if torch.device(device).type == "cuda":
            torch.backends.cudnn.benchmark = True  # shapes are fixed per model: autotune each conv once
        self.generator.to(device)
        if self.discriminator is not None:
            self.discriminator.to(device)
        self.mean_latent = self.mean_latent.to(device)
        return self

    def label(self, batch: int) -> Tensor | None:
        """The one-hot class label (B, c_dim) of a conditional NVlabs model, else None."""
        c_dim = self.g_config.get("c_dim", 0) if self.arch in NVLABS_ARCHS else 0
        if not c_dim:
            return None
        return nn.functional.one_hot(torch.full((batch,), self.class_index, device=self.device), c_dim).float()

    def mapping(self, z: Tensor) -> Tensor:
        """z (B, latent_dim) -> w (B, w size)."""
        if self.arch in NVLABS_ARCHS:
            return self.generator.mapping(z, self.label(z.shape[0]))
        return self.generator.style(z)

    def make_noise(self, batch: int, generator: torch.Generator | None = None) -> list[Tensor]:
        """Explicit per-layer noise, so a walk can keep it fixed and frames do not flicker."""
        if self.arch == "stylegan1":
            return self.generator.make_noise(batch, self.step, generator=generator, device=self.device)
        if self.arch in NVLABS_ARCHS:  # NVlabs renders with its stored maps by default (StyleGAN3 has none)
            return self.generator.const_noise(batch)
        source = generator.device if generator is not None else self.device
        return [torch.randn(batch, *n.shape[1:], generator=generator, device=source).to(self.device)
                for n in self.generator.make_noise()]

    def synthesize(self, w: Tensor, noise: list[Tensor] | None = None, truncation: float | Tensor = 1.0,
                   precision: str = "fp32") -> Tensor:
        """w (B, latent_dim) -> float32 images (B, 3, R, R), nominally in [-1, 1].

        `truncation` is one number or one per row (B, 1). `precision` (one of PRECISIONS) is for display frames:
        the synthesis runs under autocast, w stays fp32.
        """
        if noise is None:
            noise = self.make_noise(w.shape[0])
        # here for both architectures (StyleGAN2 itself ignores values above 1)
        if isinstance(truncation, Tensor) or truncation != 1.0:
            w = self.mean_latent + truncation * (w - self.mean_latent)
        with autocast_frames(precision, self.device):
            if self.arch == "stylegan1":
                image = self.generator(w, noise=noise, step=self.step, alpha=-1, input_is_latent=True)
            elif self.arch in NVLABS_ARCHS:
                image = self.generator.synthesis(w, noise)
            else:
                image, _ = self.generator([w], input_is_latent=True, noise=noise)
        return image.float()

    def generate(self, z: Tensor, noise: list[Tensor] | None = None, truncation: float = 1.0,
                 precision: str = "fp32") -> Tensor:
        """z (B, latent_dim) -> images (B, 3, R, R); `precision` as in `synthesize`."""
        return self.synthesize(self.mapping(z), noise, truncation, precision)

    def discriminate(self, images: Tensor) -> Tensor:
        """Raw logits (B,): high means D calls the image real."""
        if self.discriminator is None:
            raise RuntimeError("this GAN has no discriminator")
        if self.arch == "stylegan1":
            return self.discriminator(images, step=self.step, alpha=-1).view(-1)
        if self.arch in NVLABS_ARCHS:
            return self.discriminator(images, self.label(images.shape[0])).view(-1)
        return self.discriminator(images).view(-1)

    def mapping_parameters(self) -> list[nn.Parameter]:
        mapping = self.generator.mapping if self.arch in NVLABS_ARCHS else self.generator.style
        return list(mapping.parameters())

    def synthesis_parameters(self) -> list[nn.Parameter]:
        mapping = {id(p) for p in self.mapping_parameters()}
        return [p for p in self.generator.parameters() if id(p) not in mapping]

    def describe(self) -> dict[str, Any]:
        """Plain facts for `inspect`, logs and the HUD."""
        count = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0  # noqa: E731
        return {
            "source": self.source,
            "format": self.format,
            "arch": self.arch,
            "resolution": self.resolution,
            "trained_resolutions": list(self.trained_resolutions),
            "latent_dim": self.latent_dim,
            "generator_parameters": count(self.generator),
            "discriminator_parameters": count(self.discriminator),
            "discriminator": self.discriminator is not None,
            "journey_lr": self.journey_lr,
            "classes": self.g_config.get("c_dim", 0) if self.arch in NVLABS_ARCHS else 0,
            "class_index": self.class_index,
        }


@torch.no_grad()
def estimate_mean_latent(generator: nn.Module, latent_dim: int, samples: int = 4096, seed: int = 0) -> Tensor:
    """Average w over a fixed set of z (seeded, so the same file always truncates the same way)."""
    device = next(generator.parameters()).device
    z = torch.randn(samples, latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    return generator.style(z).mean(0, keepdim=True)


def create_stylegan1(channels: tuple[int, ...] | list[int], code_dim: int = 512, n_mlp: int = 8,
                     resolution: int | None = None, from_rgb_activate: bool = True, seed: int = 0) -> GAN:
    """A freshly initialised progressive StyleGAN1 G and D (for training from scratch and for tests)."""
    torch.manual_seed(seed)
    g_config = {"code_dim": code_dim, "n_mlp": n_mlp, "channels": list(channels)}
    d_config = {"channels": list(channels), "from_rgb_activate": from_rgb_activate}
    generator = build_generator("stylegan1", g_config)
    discriminator = build_discriminator("stylegan1", d_config)
    max_resolution = 4 * 2 ** (len(channels) - 1)
    trained = tuple(4 * 2**i for i in range(len(channels)))
    return GAN("stylegan1", generator, discriminator, resolution or max_resolution, code_dim,
               estimate_mean_latent(generator, code_dim), g_config, d_config, "new", "", trained)
