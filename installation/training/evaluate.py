"""How well a discriminator tells held-out real images from its generator's samples: ROC AUC of its logits.

1.0: D ranks every real image above every sample; 0.5: chance; below 0.5: D has it backwards. The inverted
fine-tuning needs a D that still separates well (the embedded-model reference asks for D(real) > D(fake) on
held-out images before a model ships).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from numpy.typing import ArrayLike

from ..models import GAN, load_gan
from .data import TrainingError, load_images


def roc_auc(positive: ArrayLike, negative: ArrayLike) -> float:
    """P(a random positive scores above a random negative), ties counting one half (Mann-Whitney U / n+ n-)."""
    pos = np.asarray(positive, dtype=np.float64).ravel()
    neg = np.asarray(negative, dtype=np.float64).ravel()
    if not len(pos) or not len(neg):
        raise ValueError("roc_auc needs at least one positive and one negative score")
    scores = np.concatenate([pos, neg])
    if not np.isfinite(scores).all():
        raise ValueError("roc_auc got a non-finite score")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2)[inverse]  # 1-based ranks, tied scores share their average
    u = ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


@torch.no_grad()
def discriminator_auc(gan: GAN, real: np.ndarray, fakes: int | None = None, batch: int = 64, seed: int = 0,
                      truncation: float = 1.0) -> float:
    """ROC AUC of `gan`'s D on real uint8 (N, R, R, 3) images (at gan.resolution) vs `fakes` samples of its G.

    Reals and samples go through D in separate batches of `batch`, as in training: the minibatch-stddev
    feature would otherwise see a mixed batch.
    """
    images = torch.from_numpy(real).permute(0, 3, 1, 2)
    real_logits = torch.cat([gan.discriminate(chunk.to(gan.device).float() / 127.5 - 1)
                             for chunk in images.split(batch)])
    rng = torch.Generator().manual_seed(seed)
    total, fake_logits = len(real) if fakes is None else fakes, []
    for start in range(0, total, batch):
        n = min(batch, total - start)
        z = torch.randn(n, gan.latent_dim, generator=rng).to(gan.device)
        fake_logits.append(gan.discriminate(gan.generate(z, gan.make_noise(n, rng), truncation)))
    return roc_auc(real_logits.cpu().numpy(), torch.cat(fake_logits).cpu().numpy())


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, count: int | None = None,
                        device: torch.device | str = "cpu", seed: int = 0) -> tuple[float, int, GAN]:
    """(AUC, number of real images used, the loaded GAN) for any checkpoint with a D, e.g. `stage-64px.pt`."""
    gan = load_gan(checkpoint, device=device, require_discriminator=True)
    real = load_images(data, gan.resolution)[:count]
    if not len(real):
        raise TrainingError(f"{data}: no images to evaluate on")
    return discriminator_auc(gan, real, seed=seed), len(real), gan
