"""Write checkpoint files in each upstream container layout (rosinality StyleGAN1 and StyleGAN2).

No real checkpoint is small enough to ship in a repository, so these build the same containers with the same
key names and shapes from the project's own (key-compatible) modules, filled with random weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from installation.models import stylegan1, stylegan2


def randomise(module: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


def adam_state(module: torch.nn.Module) -> dict:
    """An optimiser state_dict with real per-parameter state, as train.py saves it."""
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, betas=(0.0, 0.99))
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    module.zero_grad(set_to_none=True)
    return opt.state_dict()


def sg1_models(channels=stylegan1.FFHQ_CHANNELS, code_dim=512, n_mlp=8, activate=True, seed=0,
               trained_blocks: int | None = None):
    """Random G (raw), G (EMA) and D; blocks above `trained_blocks` keep init (zero noise), like real files."""
    g = stylegan1.StyledGenerator(code_dim, n_mlp, channels)
    g_running = stylegan1.StyledGenerator(code_dim, n_mlp, channels)
    d = stylegan1.Discriminator(channels, from_rgb_activate=activate)
    for i, module in enumerate((g, g_running, d)):
        randomise(module, seed + i)
    if trained_blocks is not None:
        with torch.no_grad():
            for gen in (g, g_running):
                for block in gen.generator.progression[trained_blocks:]:
                    block.noise1.weight_orig.zero_()
                    block.noise2.weight_orig.zero_()
    return g, g_running, d


def write_sg1_train_step(path: Path, g, g_running, d, legacy: bool = False, optimisers: bool = True) -> Path:
    """`train_step-N.model` / `stylegan-*px-new.model`: generator, discriminator, optimisers, g_running."""
    ckpt = {
        "generator": g.state_dict(),
        "discriminator": d.state_dict(),
        "g_optimizer": adam_state(g) if optimisers else {"state": {}, "param_groups": []},
        "d_optimizer": adam_state(d) if optimisers else {"state": {}, "param_groups": []},
        "g_running": g_running.state_dict(),
    }
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path


def write_sg1_bare(path: Path, g_running, legacy: bool = False) -> Path:
    """`NNNNNN.model`: the bare g_running state_dict."""
    torch.save(g_running.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    return path


SG2_SMALL = {"size": 8, "style_dim": 32, "n_mlp": 2, "channel_multiplier": 1}


def sg2_models(size=8, style_dim=32, n_mlp=2, channel_multiplier=1, seed=0):
    g = randomise(stylegan2.Generator(size, style_dim, n_mlp, channel_multiplier), seed, 0.1)
    g_ema = randomise(stylegan2.Generator(size, style_dim, n_mlp, channel_multiplier), seed + 1, 0.1)
    d = randomise(stylegan2.Discriminator(size, channel_multiplier), seed + 2, 0.1)
    return g, g_ema, d


def write_sg2_train(path: Path, g, g_ema, d, with_args: bool = True) -> Path:
    """rosinality stylegan2 train.py: g, d, g_ema, g_optim, d_optim (+ args Namespace, ada_aug_p since 2020-07)."""
    ckpt = {"g": g.state_dict(), "d": d.state_dict(), "g_ema": g_ema.state_dict(),
            "g_optim": adam_state(g), "d_optim": adam_state(d)}
    if with_args:
        ckpt["args"] = argparse.Namespace(size=g.size, batch=16, iter=800000, r1=10.0, channel_multiplier=2)
        ckpt["ada_aug_p"] = 0.0
    torch.save(ckpt, path)
    return path


def write_sg2_converted(path: Path, g_ema, latent_avg: torch.Tensor, g=None, d=None) -> Path:
    """convert_weight.py output: g_ema + latent_avg, plus g / d with --gen / --disc."""
    ckpt = {"g_ema": g_ema.state_dict(), "latent_avg": latent_avg}
    if g is not None:
        ckpt["g"] = g.state_dict()
    if d is not None:
        ckpt["d"] = d.state_dict()
    torch.save(ckpt, path)
    return path
