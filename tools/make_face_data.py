#!/usr/bin/env python3
"""Render an aligned face data set offline for `run_installation.py train --data`: a uint8 .npz plus a JSON sidecar.

    python tools/make_face_data.py --source procedural --count 20000 --resolution 64 --out data/faces64.npz
    python tools/make_face_data.py --source random-face --count 10000 --truncation 0.7 --out data/ffhq64.npz
    python tools/make_face_data.py --source random-face --count 10000 --out data/ffhq64   # a JPEG folder

An --out ending in .npz gets one compressed uint8 array (N, R, R, 3) and a sidecar <out>.json; any other --out
becomes a folder of JPEG (quality 95) files with the sidecar inside as data.json. Photographic faces compress
about 5x better as JPEG (roughly 2 KB per 64 px face), which matters where a data set has to travel.

Sources:
- procedural: uncanny's own numpy face drawer (installation/training/faces.py). No dependencies, licence-clean.
- random-face: MobileStyleGAN (distilled from NVIDIA StyleGAN2-FFHQ) run from the OpenVINO IR files inside the
  `random-face` wheel; its Python wrapper is broken on current openvino, so the IR is read directly. Dev-only:
  `pip install --no-deps random-face openvino` (uncanny itself never depends on them). About 0.8 s per face on
  2 CPU cores (1024 px, area-averaged down). The weights' provenance is non-commercial (see the sidecar).

The data set is a build artefact: never commit it. The sidecar records source, seed, count and licence, and
training copies source and licence into every stage checkpoint it writes.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from installation.arguments import positive_float, resolution_arg  # noqa: E402
from installation.storage import atomic_write_bytes  # noqa: E402
from installation.training.faces import area_downsample, draw_face  # noqa: E402

LICENCES = {
    "procedural": "drawn by uncanny's procedural face generator; no third-party content (uncanny's MIT licence)",
    "random-face": "random-face 2021.7.21.1 (MobileStyleGAN): code Apache-2.0, but the weights are distilled from "
                   "NVIDIA StyleGAN2-FFHQ (Nvidia Source Code License-NC) trained on FFHQ (CC BY-NC-SA 4.0): "
                   "treat the images and models trained on them as non-commercial, research/evaluation only",
}
JPEG_QUALITY = 95
RANDOM_FACE_SIZE = 1024
MEAN_SAMPLES = 4096


class DataSetError(Exception):
    """A data set cannot be made as asked; printed as one line, exit 2."""


def random_face_renderer(seed: int, truncation: float):
    """A function index -> (3, 1024, 1024) float image in [-1, 1] from the wheel's OpenVINO IR networks."""
    spec = importlib.util.find_spec("random_face")  # locate the data without importing the broken package
    try:
        import openvino as ov
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataSetError("the random-face source needs the dev-only packages random-face and openvino: "
                                "pip install --no-deps random-face openvino")
    data = Path(spec.submodule_search_locations[0]) / "data"
    core = ov.Core()

    def compile_net(name: str, batch: int):
        model = core.read_model(str(data / f"{name}.xml"), str(data / f"{name}.bin"))
        model.reshape({model.inputs[0].get_any_name(): [batch, 512]})
        return core.compile_model(model, "CPU")

    z_mean = np.random.default_rng([seed, 2**32]).standard_normal((MEAN_SAMPLES, 512)).astype(np.float32)
    mean_style = compile_net("MappingNetwork", MEAN_SAMPLES)(z_mean)[0].mean(0, keepdims=True)
    mapping, synthesis = compile_net("MappingNetwork", 1), compile_net("SynthesisNetwork", 1)

    def render(index: int) -> np.ndarray:
        z = np.random.default_rng([seed, index]).standard_normal((1, 512)).astype(np.float32)
        style = mean_style + truncation * (mapping(z)[0] - mean_style)
        return synthesis(style)[0][0]
    return render


def render_faces(source: str, count: int, seed: int, resolution: int, truncation: float) -> np.ndarray:
    if source == "procedural":
        make = lambda i: draw_face(np.random.default_rng([seed, i]), resolution)  # noqa: E731
    else:
        if RANDOM_FACE_SIZE % resolution:
            raise DataSetError(f"--resolution {resolution} does not divide {RANDOM_FACE_SIZE}")
        render = random_face_renderer(seed, truncation)

        def make(i: int) -> np.ndarray:
            image = (np.clip(render(i), -1, 1).transpose(1, 2, 0) + 1) * 127.5
            return np.round(area_downsample(image, RANDOM_FACE_SIZE // resolution)).astype(np.uint8)
    faces = np.zeros((count, resolution, resolution, 3), np.uint8)
    start = last = time.monotonic()
    for i in range(count):
        faces[i] = make(i)
        if time.monotonic() - last > 10 or i == count - 1:
            last = time.monotonic()
            print(f"\r{i + 1}/{count} faces, {(i + 1) / (last - start):.2f} faces/s", end="", file=sys.stderr)
    print(file=sys.stderr)
    return faces


def whole_number(minimum: int):
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return int(text)
    return parse


def write_npz(out: Path, faces: np.ndarray, notes: dict) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=faces)
    atomic_write_bytes(out, buffer.getvalue())
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(notes, indent=2) + "\n").encode())


def write_jpeg_folder(out: Path, faces: np.ndarray, notes: dict) -> None:
    """Fill a hidden sibling folder, then rename it into place: a reader sees the whole set or none of it."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, face in enumerate(faces):
        Image.fromarray(face).save(tmp / f"{i:06d}.jpg", quality=JPEG_QUALITY)
    (tmp / "data.json").write_text(json.dumps(notes, indent=2) + "\n")
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=sorted(LICENCES), default="procedural")
    parser.add_argument("--count", type=whole_number(1), default=10000)
    parser.add_argument("--seed", type=whole_number(0), default=0)
    parser.add_argument("--resolution", type=resolution_arg, default=64)
    parser.add_argument("--truncation", type=positive_float, default=0.7,
                        help="random-face only: pull w towards the mean (1 = none; default 0.7)")
    parser.add_argument("--out", type=Path, required=True,
                        help="a .npz (sidecar <out>.json) or a folder to fill with JPEG files (sidecar data.json)")
    args = parser.parse_args(argv)
    notes = {"source": args.source, "seed": args.seed, "count": args.count, "resolution": args.resolution,
             "truncation": args.truncation if args.source == "random-face" else None,
             "licence": LICENCES[args.source], "made_by": "tools/make_face_data.py"}
    try:
        if args.out.suffix != ".npz" and args.out.exists():
            raise DataSetError(f"{args.out} already exists; remove it or choose another --out")
        faces = render_faces(args.source, args.count, args.seed, args.resolution, args.truncation)
        (write_npz if args.out.suffix == ".npz" else write_jpeg_folder)(args.out, faces, notes)
    except DataSetError as error:
        print(f"make_face_data: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {args.count} faces of {args.resolution} px from {args.source}, seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
