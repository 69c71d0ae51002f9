"""Seamless latent loops driven by time, and the frames they show.

A walk is a closed cycle through K keyframes in z. Between consecutive keyframes it follows the great circle
(slerp), the convention StyleGAN's perceptual path length uses for z, so |z| stays typical of the prior. The
position is a pure function of time modulo the period: motion speed does not depend on the frame rate, and
frames sampled at `loop_times(period, fps)` (end point excluded) repeat without a seam.

Keyframe k of a walk is the z that `uncanny sample --seeds s_k` draws (`randn` from `manual_seed(s_k)`), and the
walk's fixed noise continues the first keyframe's stream as `sample` does, so a walk starts on exactly the image
`sample` shows for its first seed. `render_walk_frames` draws what the live frame drawer draws (engine/drawer.py), for
loop export and for checking the live frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .images import to_uint8
from .models.gan import GAN

BUCKETS = (1, 2, 4, 8)  # generator batch sizes of the frame drawer on CUDA (see `bucket`)


class Walk:
    """A loop of `period` seconds through `keyframes` z's.

    keyframes: a count K (sample seeds seed*K .. seed*K + K-1, so walks with different seeds never share one) or
    an explicit list of sample seeds to visit in order (then `seed` is not used).
    """

    def __init__(self, latent_dim: int, keyframes: int | Sequence[int] = 4, period: float = 16.0, seed: int = 0):
        if isinstance(keyframes, int):
            seeds = list(range(seed * keyframes, (seed + 1) * keyframes))
        else:
            seeds = list(keyframes)
        if not seeds or min(seeds) < 0:
            raise ValueError(f"a walk needs at least one keyframe seed >= 0, got {keyframes!r} (seed {seed})")
        if not period > 0:
            raise ValueError(f"period must be > 0 seconds, got {period}")
        self.latent_dim, self.seeds, self.period = latent_dim, seeds, float(period)
        # float64 so that slerp at a keyframe returns the keyframe to the last bit before the cast
        self.keyframes = torch.stack([torch.randn(1, latent_dim, generator=torch.Generator().manual_seed(s))[0]
                                      for s in seeds]).double()
        following = self.keyframes.roll(-1, 0)
        cosine = (self.keyframes * following).sum(1) / (self.keyframes.norm(dim=1) * following.norm(dim=1))
        self._angles = torch.arccos(cosine.clamp(-1.0, 1.0))  # (K,): from keyframe k to k+1 (mod K)
        self._noise: dict[tuple[str, int, str], list[Tensor]] = {}

    def z_at(self, t: float) -> Tensor:
        """z (latent_dim,) at time t seconds; z_at(t) == z_at(t + period)."""
        return self.batch_z([t])[0]

    def batch_z(self, times: Sequence[float] | np.ndarray | Tensor) -> Tensor:
        """z (len(times), latent_dim) float32 for times in seconds."""
        t = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
        k = len(self.seeds)
        position = torch.remainder(t, self.period) / self.period * k
        index = position.floor().long().clamp(0, k - 1)  # rounding can put t just below a period at k
        f = (position - index)[:, None]
        return slerp(self.keyframes[index], self.keyframes[(index + 1) % k], f, self._angles[index][:, None]).float()

    def noise(self, gan: GAN) -> list[Tensor]:
        """The walk's fixed per-layer noise (batch 1) for this generator's architecture and resolution."""
        key = (gan.arch, gan.resolution, str(gan.device))
        if key not in self._noise:
            rng = torch.Generator().manual_seed(self.seeds[0])
            torch.randn(1, self.latent_dim, generator=rng)  # step past keyframe 0's z, as `sample` does
            self._noise[key] = gan.make_noise(1, rng)
        return self._noise[key]


def slerp(a: Tensor, b: Tensor, f: float | Tensor, angle: Tensor | None = None) -> Tensor:
    """Great-circle blend from rows of a (f = 0) to rows of b (f = 1); `angle` between them if already known."""
    if angle is None:
        cosine = (a * b).sum(1, keepdim=True) / (a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True))
        angle = torch.arccos(cosine.clamp(-1.0, 1.0))
    f = torch.as_tensor(f, dtype=angle.dtype)
    sine = angle.sin()
    near = sine < 1e-6  # (anti)parallel rows: slerp is undefined, a straight line is what is meant
    sine = torch.where(near, torch.ones_like(sine), sine)
    w0 = torch.where(near, 1 - f, ((1 - f) * angle).sin() / sine)
    w1 = torch.where(near, f, (f * angle).sin() / sine)
    return w0 * a + w1 * b


def make_walks(count: int, latent_dim: int, keyframes: int = 4, period: float = 16.0, seed: int = 0) -> list[Walk]:
    """`count` different walks (seeds seed, seed+1, ...) for the grid view."""
    return [Walk(latent_dim, keyframes, period, seed + i) for i in range(count)]


@torch.no_grad()
def render_walk_frames(gan: GAN, walks: Sequence[Walk], t: float, truncation: float = 1.0,
                       precision: str = "fp32") -> np.ndarray:
    """One frame per walk at time t: (len(walks), R, R, 3) uint8, top row first."""
    return draw_walks(gan, walks, torch.cat([walk.batch_z([t]) for walk in walks]), truncation, precision)


def bucket(rows: int) -> int:
    """The generator batch that `rows` images are drawn in on CUDA: the next of BUCKETS (larger counts, the grid's
    N x N, as they are). cuDNN's autotuner (cudnn.benchmark) tunes every conv anew for each new batch size, a stutter
    of the picture each time; with buckets there are four, tuned together by the first call."""
    return next((size for size in BUCKETS if size >= rows), rows)


_tuned: set[tuple[int, str]] = set()  # (generator, precision) whose bucket batches cuDNN has tuned


@torch.no_grad()
def draw_walks(gan: GAN, walks: Sequence[Walk], z: Tensor, truncation: float | Tensor = 1.0,
               precision: str = "fp32") -> np.ndarray:
    """The frames of `walks` at latents `z` (one row each), with each walk's fixed noise; `truncation` one number
    or one per row (as GAN.synthesize). On CUDA the batch is padded up to its `bucket` with copies of the last row,
    and the first call for a generator draws every bucket once, so the tuning happens at start, not in the show."""
    rows = len(walks)
    cuda = gan.device.type == "cuda"
    if cuda and (key := (id(gan.generator), precision)) not in _tuned:
        _tuned.add(key)
        for size in BUCKETS:
            draw_walks(gan, [walks[0]] * size, z[:1].expand(size, -1), 0.7, precision)
    padding = bucket(rows) - rows if cuda else 0
    if padding:
        walks, z = [*walks, *[walks[-1]] * padding], torch.cat([z, z[-1:].expand(padding, -1)])
        if isinstance(truncation, Tensor):
            truncation = torch.cat([truncation, truncation[-1:].expand(padding, -1)])
    noise = [torch.cat(layer) for layer in zip(*(walk.noise(gan) for walk in walks))]
    images = gan.synthesize(gan.mapping(z.to(gan.device)), noise, truncation, precision)
    return to_uint8(images[:rows])


def loop_times(period: float, fps: float) -> np.ndarray:
    """Times of one seamless loop export: round(period * fps) evenly spaced frames, the end point excluded
    (it is the first frame again); the spacing is adjusted slightly so the loop closes exactly."""
    count = max(1, round(period * fps))
    return np.arange(count) * (period / count)
