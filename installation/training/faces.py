"""An in-house procedural face drawer: aligned, licence-clean training and test faces with no dependencies.

Each face is drawn from simple shapes (background gradient, shoulders, neck, hair, head, ears, eyes, brows,
nose, mouth, sometimes glasses) at 4x the requested size and area-averaged down, which anti-aliases the edges.
Face `i` of seed `s` depends on (s, i) only, so a larger set with the same seed starts with the smaller one.
"""

from __future__ import annotations

import numpy as np

SUPERSAMPLE = 4
SKIN_LIGHT, SKIN_DARK = np.array([0.96, 0.80, 0.69]), np.array([0.33, 0.20, 0.13])
HAIR_COLOURS = np.array([[0.08, 0.06, 0.05], [0.30, 0.18, 0.10], [0.55, 0.38, 0.20], [0.85, 0.70, 0.42],
                         [0.60, 0.25, 0.10], [0.70, 0.70, 0.70]])
IRIS_COLOURS = np.array([[0.35, 0.20, 0.10], [0.20, 0.40, 0.65], [0.25, 0.45, 0.25], [0.15, 0.10, 0.08]])


def area_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, C) -> (H/f, W/f, C) by averaging f x f blocks (exact area resampling for integer factors)."""
    h, w, c = image.shape
    return image.reshape(h // factor, factor, w // factor, factor, c).mean(axis=(1, 3))


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float,
             angle: float = 0.0) -> np.ndarray:
    """Squared normalised distance from an (optionally rotated) ellipse's centre: < 1 inside."""
    dx, dy = x - cx, y - cy
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    return (dx / rx) ** 2 + (dy / ry) ** 2


def _paint(image: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    image[mask] = colour if np.ndim(colour) == 1 else colour[mask]


def draw_face(rng: np.random.Generator, resolution: int) -> np.ndarray:
    """One (R, R, 3) uint8 face, roughly aligned like FFHQ crops (eyes a little above the centre)."""
    size = resolution * SUPERSAMPLE
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    top, bottom = rng.uniform(0.1, 0.95, (2, 3)) * 0.7 + rng.uniform(0.05, 0.3)  # muted
    image = top + (bottom - top) * y[..., None]

    skin = SKIN_LIGHT + (SKIN_DARK - SKIN_LIGHT) * rng.beta(1.3, 1.6) + rng.normal(0, 0.02, 3)
    hair = np.clip(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.normal(0, 0.04, 3), 0, 1)
    cx, cy = 0.5 + rng.normal(0, 0.012), 0.5 + rng.normal(0, 0.012)
    rx = rng.uniform(0.21, 0.27)
    ry = rx * rng.uniform(1.2, 1.42)
    long_hair, bald = rng.random() < 0.45, rng.random() < 0.08

    _paint(image, _ellipse(x, y, 0.5, 1.12, rng.uniform(0.36, 0.5), 0.32) < 1, rng.uniform(0.05, 0.9, 3))
    if long_hair and not bald:  # hair behind the head and shoulders
        _paint(image, (_ellipse(x, y, cx, cy + 0.1, rx * 1.3, ry * 1.25) < 1) & (y < cy + ry * rng.uniform(0.6, 1.3)),
               hair * 0.85)
    _paint(image, (np.abs(x - cx) < rx * 0.45) & (y > cy) & (y < 0.95), skin * 0.82)
    for side in (-1, 1):
        _paint(image, _ellipse(x, y, cx + side * rx * 0.97, cy + 0.02, rx * 0.16, ry * 0.2) < 1, skin * 0.9)

    head = _ellipse(x, y, cx, cy, rx, ry)
    light = 1 + rng.uniform(-0.25, 0.25) * (x - cx) / rx  # a light from one side
    shaded = skin * ((1 - 0.22 * head) * light)[..., None]
    _paint(image, head < 1, np.clip(shaded, 0, 1))
    if not bald:
        hairline = cy - ry * rng.uniform(0.3, 0.55) + rng.uniform(0, 0.8) * (x - cx) ** 2 / rx
        _paint(image, (_ellipse(x, y, cx, cy - ry * 0.08, rx * 1.08, ry * 1.0) < 1) & (y < hairline), hair)

    eye_y, eye_dx = cy - ry * rng.uniform(0.02, 0.14), rx * rng.uniform(0.36, 0.46)
    eye_w, eye_h = rx * rng.uniform(0.17, 0.23), rx * rng.uniform(0.08, 0.12)
    gaze = rng.normal(0, 0.25) * eye_w
    iris = IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]
    brow_lift, brow_tilt = rx * rng.uniform(0.2, 0.32), rng.normal(0, 0.15)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        eye = _ellipse(x, y, ex, eye_y, eye_w, eye_h) < 1
        _paint(image, eye, np.array([0.95, 0.94, 0.92]))
        _paint(image, eye & (_ellipse(x, y, ex + gaze, eye_y, eye_h * 0.95, eye_h * 0.95) < 1), iris)
        _paint(image, eye & (_ellipse(x, y, ex + gaze, eye_y, eye_h * 0.45, eye_h * 0.45) < 1), np.zeros(3))
        _paint(image, _ellipse(x, y, ex, eye_y - brow_lift, eye_w * 1.15, rx * 0.045, side * brow_tilt) < 1,
               hair * 0.7 if not bald else skin * 0.6)

    nose_y = cy + ry * rng.uniform(0.18, 0.28)
    _paint(image, _ellipse(x, y, cx + rx * 0.04, nose_y - ry * 0.1, rx * 0.06, ry * 0.16) < 1, skin * 0.88)
    for side in (-1, 1):
        _paint(image, _ellipse(x, y, cx + side * rx * 0.09, nose_y, rx * 0.045, rx * 0.03) < 1, skin * 0.55)

    mouth_y, mouth_w = cy + ry * rng.uniform(0.45, 0.55), rx * rng.uniform(0.3, 0.45)
    bent = y - rng.uniform(-0.8, 1.2) * rx * 0.12 * (1 - ((x - cx) / mouth_w) ** 2)  # > 0 smiles
    lips = np.clip(skin * np.array([0.85, 0.55, 0.55]) + rng.normal(0, 0.03, 3), 0, 1)
    _paint(image, _ellipse(x, bent, cx, mouth_y, mouth_w, rx * rng.uniform(0.06, 0.11)) < 1, lips)
    _paint(image, _ellipse(x, bent, cx, mouth_y, mouth_w * 0.95, rx * 0.018) < 1, lips * 0.35)

    if rng.random() < 0.15:  # glasses: two rings and a bridge
        frame = rng.uniform(0, 0.5, 3)
        for side in (-1, 1):
            ring = _ellipse(x, y, cx + side * eye_dx, eye_y, eye_w * 1.5, eye_w * 1.2)
            _paint(image, (ring < 1) & (ring > 0.78), frame)
        _paint(image, (np.abs(y - eye_y) < rx * 0.025) & (np.abs(x - cx) < eye_dx - eye_w * 1.4), frame)

    small = area_downsample(np.clip(image, 0, 1), SUPERSAMPLE)
    return np.round(small * 255).astype(np.uint8)


def procedural_faces(count: int, seed: int = 0, resolution: int = 64) -> np.ndarray:
    """(count, R, R, 3) uint8 faces; face i depends only on (seed, i)."""
    return np.stack([draw_face(np.random.default_rng([seed, i]), resolution) for i in range(count)]) \
        if count else np.zeros((0, resolution, resolution, 3), np.uint8)
