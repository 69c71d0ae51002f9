"""Generator tensors to pictures: uint8 conversion, grids and PNG/JPEG files."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .storage import atomic_write_bytes

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}  # file extension -> Pillow format


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8, C-contiguous; non-finite values become black rather than noise.

    The uint8 pixels are made contiguous where they are computed, so a GPU's frames leave it as one plain copy (a
    quarter of the float bytes), straight into pinned host memory (DMA, no staging copy); the pinned block returns
    to torch's cache when the array is dropped."""
    x = torch.nan_to_num(images.detach().float(), nan=-1.0, posinf=1.0, neginf=-1.0)
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    if x.device.type != "cuda":
        return x.numpy()
    host = torch.empty(x.shape, dtype=torch.uint8, pin_memory=True)
    host.copy_(x, non_blocking=True)
    torch.cuda.current_stream(x.device).synchronize()
    return host.numpy()


def grid(images: np.ndarray, columns: int | None = None, pad: int = 0, fill: int = 0) -> np.ndarray:
    """Tile (N, H, W, C) images row by row into one (rows*H, columns*W, C) picture."""
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), fill, dtype=images.dtype)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y:y + h, x:x + w] = image
    return out


def _save(path: Path, image: np.ndarray, image_format: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format, **({"quality": 95} if image_format == "JPEG" else {}))
    atomic_write_bytes(path, buffer.getvalue())


def save_png(path: str | Path, image: np.ndarray) -> None:
    _save(Path(path), image, "PNG")


def save_image(path: str | Path, image: np.ndarray) -> None:
    """PNG or JPEG (quality 95), as the extension says; ValueError for any other extension."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_FORMATS:
        raise ValueError(f"unknown picture extension {path.suffix!r} in {str(path)!r}; use .png, .jpg or .jpeg")
    _save(path, image, IMAGE_FORMATS[path.suffix.lower()])
