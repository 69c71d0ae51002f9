"""How varied a batch of generated pictures is: 1 - their mean pairwise MS-SSIM, the measure of mode collapse used
by Odena et al. (2017, AC-GAN) and Karras et al. (2018, ProGAN).

Why structural similarity rather than a pixel distance: the journey's end is one shared posterised form whose copies
differ by small shifts of hard black-and-white edges. A pixel distance counts every misaligned edge in full and even
grows as the contrast does; SSIM compares local means, contrasts and correlations over a Gaussian window, and
MS-SSIM does so at several scales, where small shifts weigh less. 0 = identical pictures; unrelated ones approach 1.

Pictures are compared as the screen shows them (clipped to [-1, 1]: values run off to +-1e4 as G collapses) and at
no more than 64 px, so models of 64 px and more are measured alike. Wang, Simoncelli and Bovik's MS-SSIM (2003) uses
five scales from an 11-tap window; at 64 px three scales (64, 32, 16 px) with a 7-tap window (sigma 1.5 as theirs)
fit, weighted by their first three weights, renormalised; smaller models get fewer scales (32 px: two, 16 px: one),
so their figures are comparable within a journey but not with a 64 px model's. A negative term (anti-correlated
pictures) counts as 0.

What the figures look like (probe of 8): held-out faces of the embedded model's data set 0.69 (0.58 to 0.78 over
batches of 8); the embedded 64 px model 0.62 at the start and 0.18 to 0.24 at the posterised end (each latent still
moves the shared form's edges and shading a little). The engine's collapse line is half the starting value
(`collapse_fraction` 0.5): each of four journeys on the embedded models crossed it after its contact sheet showed
one form shared by every latent, never before, so the flag comes late rather than early (docs/default-model.md).
It has not been checked on full-size FFHQ models.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

MAX_SIZE = 64
DIVERSITY_MEASURE = "1 - ms-ssim"  # recorded in run.json, so a run folder from an older measure is re-based
SCALE_WEIGHTS = (0.0448, 0.2856, 0.3001)  # Wang et al.'s finest three, renormalised below
WINDOW, SIGMA = 7, 1.5
C1, C2 = 0.01**2, 0.03**2  # their stabilisers, for pictures in [0, 1]
PAIRS_PER_CHUNK = 256  # bounds memory for large probes (256 pictures = 32,640 pairs)


def _window(size: int, channels: int) -> Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-x.square() / (2 * SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def scale_count(size: int) -> int:
    """How many scales fit: a coarser one is used while it is still at least two windows wide (64 px: 3, 32: 2)."""
    count = 1
    while count < len(SCALE_WEIGHTS) and size >> count >= 2 * WINDOW:
        count += 1
    return count


def pairwise_ms_ssim(pictures: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """MS-SSIM of the picture pairs (first[k], second[k]) of `pictures` (B, C, H, W) in [0, 1]; one value a pair.

    Means and variances are blurred once per picture; only the cross terms are computed per pair, in chunks.
    """
    channels, scales = pictures.shape[1], scale_count(min(pictures.shape[-2:]))
    weights = [w / sum(SCALE_WEIGHTS[:scales]) for w in SCALE_WEIGHTS[:scales]]
    result = torch.ones(len(first), device=pictures.device)
    for scale, weight in enumerate(weights):
        if scale:
            pictures = F.avg_pool2d(pictures, 2)
        window = _window(min(WINDOW, *pictures.shape[-2:]), channels).to(pictures)
        blur = lambda t: F.conv2d(t, window, groups=channels)  # noqa: E731
        mu = blur(pictures)
        var = blur(pictures.square()) - mu.square()
        values = []
        for chunk in torch.split(torch.arange(len(first), device=pictures.device), PAIRS_PER_CHUNK):
            i, j = first[chunk], second[chunk]
            covariance = blur(pictures[i] * pictures[j]) - mu[i] * mu[j]
            similarity = (2 * covariance + C2) / (var[i] + var[j] + C2)  # contrast and structure
            if scale == scales - 1:  # luminance enters once, at the coarsest scale
                similarity = similarity * (2 * mu[i] * mu[j] + C1) / (mu[i].square() + mu[j].square() + C1)
            values.append(similarity.flatten(1).mean(1))
        result = result * torch.cat(values).clamp(min=0) ** weight
    return result


def diversity(images: Tensor) -> float:
    """1 - mean pairwise MS-SSIM of images (B >= 2, 3, R, R) as displayed; 0 when they are all the same picture.

    A float, as metrics.jsonl, the collapse line and comparisons use it (a 0-d tensor is no number to pytest.approx).
    """
    shown = (images.detach().float().clamp(-1, 1) + 1) / 2
    if shown.shape[-1] > MAX_SIZE:
        shown = F.adaptive_avg_pool2d(shown, MAX_SIZE)
    first, second = torch.triu_indices(len(shown), len(shown), 1, device=shown.device)
    return 1 - pairwise_ms_ssim(shown, first, second).mean().item()
