"""Training images: a uint8 `.npz` from tools/make_face_data.py or a folder of PNG/JPEG files, in memory.

Images are kept as uint8 (N, R, R, 3) at the training resolution; lower progressive stages area-average them
on the fly. The order images are drawn in is a pure function of (seed, position in the stream), so a resumed
run draws exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .faces import area_downsample

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class TrainingError(Exception):
    """Bad training input or a refused resume; the message is one line naming the problem and the fix."""


def load_images(path: str | Path, resolution: int) -> np.ndarray:
    """(N, R, R, 3) uint8 at `resolution`, area-downsampled from larger square images."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise TrainingError(f"{path}: no .png/.jpg/.jpeg images in this folder")
        return np.stack([_read_image(p, resolution) for p in files])
    if path.suffix != ".npz" or not path.is_file():
        raise TrainingError(f"{path}: pass a .npz made by tools/make_face_data.py or a folder of PNG/JPEG images")
    try:
        with np.load(path, allow_pickle=False) as archive:
            images = archive["images"] if "images" in archive else archive[archive.files[0]]
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise TrainingError(f"{path}: cannot read it as an image .npz ({error})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise TrainingError(f"{path}: expected uint8 images of shape (N, R, R, 3), got {images.dtype} "
                            f"{images.shape}")
    size = images.shape[1]
    if size < resolution or size % resolution or (size // resolution) & (size // resolution - 1):
        raise TrainingError(f"{path}: its {size} px images cannot be area-downsampled to {resolution} px; "
                            "render the data at the training resolution or a power-of-two multiple of it")
    if size > resolution:
        factor = size // resolution
        images = np.stack([np.round(area_downsample(im.astype(np.float32), factor)).astype(np.uint8)
                           for im in images])
    return images


def _read_image(path: Path, resolution: int) -> np.ndarray:
    """Centre-crop to a square, then box (area) resample to the training size."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BOX)
            return np.asarray(im, dtype=np.uint8)
    except OSError as error:
        raise TrainingError(f"{path}: cannot read this image ({error})") from None


def describe_data(path: str | Path, images: np.ndarray) -> dict[str, Any]:
    """A fingerprint of the pixels (a moved or re-rendered identical file still matches) plus the sidecar's notes."""
    facts: dict[str, Any] = {"count": int(len(images)),
                             "fingerprint": hashlib.sha256(np.ascontiguousarray(images).data).hexdigest()[:16]}
    path = Path(path)
    sidecar = path / "data.json" if path.is_dir() else path.with_suffix(".json")
    if sidecar.is_file():
        try:
            notes = json.loads(sidecar.read_text())
            facts.update({k: str(notes[k]) for k in ("source", "licence") if k in notes})
        except (OSError, ValueError):
            pass  # the sidecar is informational only
    return facts


def batch_indices(count: int, seed: int, start: int, size: int) -> np.ndarray:
    """Indices of stream positions [start, start + size): every epoch is a fresh permutation seeded by (seed, epoch)."""
    positions = np.arange(start, start + size)
    epochs = positions // count
    out = np.empty(size, dtype=np.int64)
    for epoch in np.unique(epochs):
        where = epochs == epoch
        out[where] = np.random.default_rng([seed, int(epoch)]).permutation(count)[positions[where] % count]
    return out
