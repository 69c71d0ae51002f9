"""The inverted generator objectives: G is trained to make its frozen D call its images fake.

rosinality's D returns a raw logit l (high = real). With p = sigmoid(l) the probability of "real":

- `logit` (default, the paper's behaviour): minimise mean(l). Unbounded below; the thesis' loss plots fall
  linearly into the tens of thousands, which is what a loss linear in the raw logit does.
- `softplus`: minimise mean(softplus(l)) = mean(-log(1 - p)), the non-saturating GAN loss with the labels swapped.
  Bounded below by 0, so it slows down as D becomes sure.
- `log`: the thesis' natural-log variant, max log(E[1 - log D(G(z))]), read with D = p:
  minimise -log(mean(1 + softplus(-l))). Since -log p = softplus(-l) >= 0, the argument of the log is >= 1, so
  the loss is finite for every finite logit (the original took the log of a quantity that could go negative and
  produced NaN). It is <= 0 and falls only logarithmically: about -11.5 at l = -1e5, like the thesis' log plots.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F


def inverted_loss(name: str, logits: Tensor) -> Tensor:
    """Scalar loss to minimise for D logits (B,) of generated images."""
    if name == "logit":
        return logits.mean()
    if name == "softplus":
        return F.softplus(logits).mean()
    if name == "log":
        return -(1 + F.softplus(-logits)).mean().log()
    raise ValueError(f"unknown loss {name!r}")
