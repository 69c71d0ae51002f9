"""One face for every supported StyleGAN: generate, map, synthesise, discriminate.

The engine, the latent walks and the display only talk to `GAN`; which upstream architecture sits behind it
(rosinality StyleGAN1 with its `step`/`alpha`, StyleGAN2 with its list-of-styles call, or NVlabs' StyleGAN2-ADA
and StyleGAN3 with their class label and separate mapping/synthesis networks) stays in here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from . import stylegan1, stylegan2, stylegan2_ada, stylegan3

NVLABS_ARCHS = ("stylegan2-ada", "stylegan3")
ARCHS = ("stylegan1", "stylegan2", *NVLABS_ARCHS)


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

    def synthesize(self, w: Tensor, noise: list[Tensor] | None = None, truncation: float = 1.0) -> Tensor:
        """w (B, latent_dim) -> images (B, 3, R, R), nominally in [-1, 1]."""
        if noise is None:
            noise = self.make_noise(w.shape[0])
        if truncation != 1.0:  # here for both architectures (StyleGAN2 itself ignores values above 1)
            w = self.mean_latent + truncation * (w - self.mean_latent)
        if self.arch == "stylegan1":
            return self.generator(w, noise=noise, step=self.step, alpha=-1, input_is_latent=True)
        if self.arch in NVLABS_ARCHS:
            return self.generator.synthesis(w, noise)
        image, _ = self.generator([w], input_is_latent=True, noise=noise)
        return image

    def generate(self, z: Tensor, noise: list[Tensor] | None = None, truncation: float = 1.0) -> Tensor:
        """z (B, latent_dim) -> images (B, 3, R, R)."""
        return self.synthesize(self.mapping(z), noise, truncation)

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
