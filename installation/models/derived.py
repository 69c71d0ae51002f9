"""Speed helpers shared by both architectures: derived weights and the feature-map layout.

Tensors derived from parameters (equal-lr scaled weights, fused kernels, StyleGAN1's inference plan) are computed once
per weight version.

Equalised learning rate keeps raw weights and rescales them on every call. While the weights do not change
(display frames between training steps, sampling, a frozen discriminator) the rescaled copy is reused; it is
recomputed when autograd needs the operation in its graph or when a source parameter changed: in-place updates
(Adam, `load_state_dict`, `copy_`) bump its `_version`, `.to()` moves it to other memory. Writes through
`.data` bypass the version counter and are not seen (the project makes them only while building modules).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor, nn

T = TypeVar("T")


def derived(owner: nn.Module, name: str, compute: Callable[[], T], *sources: Tensor) -> T:
    """`compute()`, reused from `owner`'s cache while every source is unchanged and needs no gradient."""
    if torch.is_grad_enabled() and any(s.requires_grad for s in sources):
        return compute()
    # inference tensors cannot be saved for backward, so inference mode gets entries of its own; the layout
    # (conv_layout) follows the grad mode
    key = (torch.is_inference_mode_enabled(), torch.is_grad_enabled(),
           *((s._version, s.data_ptr(), s.dtype, s.device) for s in sources))
    cache = owner.__dict__.setdefault("_derived", {})
    entry = cache.get(name)
    if entry is None or entry[0] != key:
        entry = cache[name] = (key, compute())
    return entry[1]


def feature_layout() -> torch.memory_format:
    """Channels-last for inference (oneDNN's convs up to 2x and its depthwise blurs several times faster on this
    CPU at batch 4), but the standard layout when autograd records: there the conv backward measured slower."""
    return torch.contiguous_format if torch.is_grad_enabled() else torch.channels_last


def conv_layout(weight: Tensor) -> Tensor:
    """A conv weight in the features' layout (oneDNN would otherwise reorder it on every call); others as they are."""
    return weight.contiguous(memory_format=feature_layout()) if weight.ndim == 4 else weight
