#!/usr/bin/env python3
"""Put trained stage files into the package as the embedded default model.

    python tools/ship_default_model.py train64/stage-64px.pt train64/stage-32px.pt --journey-lr 5e-5,3e-5

The first file becomes `installation/assets/default.pt` (what runs when no checkpoint is given); each further
one becomes `default-<R>px.pt`, the earlier training stages that the paper shows travel differently. Every file
is checked with `load_gan` first (it must hold its discriminator), gets `meta.journey_lr` (the learning rate,
measured with `run_installation.py journey`, at which the inverted fine-tuning plays the paper's arc on it: the
installation's `lr = 0` means this rate; one for all files, or one per file in order, since the stages travel at
different paces), and is written atomically. The earlier stages lose their raw generator
(the moving-average one is what runs) so that everything fits the package's size budget. Stale default*.pt files
that are not part of the new set are removed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from installation.models import CheckpointError, load_gan  # noqa: E402
from installation.models.config import DEFAULT_CHECKPOINT  # noqa: E402
from installation.models.loader import OWN_FORMAT_KEY, valid_journey_lr  # noqa: E402
from installation.storage import atomic_torch_save  # noqa: E402

BUDGET_BYTES = 25 * 1000**2  # all shipped model files together
MIN_RESOLUTION = 64


class ShipError(Exception):
    """The files cannot be shipped as asked; printed as one line, exit 2."""


def prepared(path: Path, journey_lr: float, keep_raw: bool) -> tuple[dict[str, Any], int]:
    """The file's contents with the journey rate added (and the raw G dropped unless kept), and its resolution."""
    try:
        gan = load_gan(path, require_discriminator=True)
    except CheckpointError as error:
        raise ShipError(str(error)) from None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if OWN_FORMAT_KEY not in ckpt:
        raise ShipError(f"{path}: a {gan.format} file; ship the stage-<R>px.pt files that `train` writes")
    ckpt = dict(ckpt)
    ckpt["meta"] = {**ckpt.get("meta", {}), "journey_lr": journey_lr}
    if not keep_raw:
        ckpt["generator"] = None
    return ckpt, gan.resolution


def rates_arg(text: str) -> list[float]:
    """'1e-4' or '1e-4,3e-5': journey rates, each > 0 and <= 1."""
    try:
        rates = [float(part) for part in text.split(",")]
    except ValueError:
        rates = []
    if not rates or not all(valid_journey_lr(rate) for rate in rates):
        raise argparse.ArgumentTypeError(f"bad rate list {text!r}; write rates > 0 and <= 1, e.g. 1e-4 or 1e-4,3e-5")
    return rates


def ship(stages: list[Path], journey_lrs: list[float], assets: Path) -> list[tuple[Path, int]]:
    """Write the stage files into `assets` with their journey rates (one for all, or one per file); returns
    (path, bytes) for each."""
    if not all(valid_journey_lr(rate) for rate in journey_lrs):
        raise ShipError(f"--journey-lr rates must be > 0 and <= 1, got {journey_lrs!r}")
    if len(journey_lrs) not in (1, len(stages)):
        raise ShipError(f"--journey-lr gives {len(journey_lrs)} rates for {len(stages)} files; give one rate, or one "
                        "per file in order")
    rates = journey_lrs * len(stages) if len(journey_lrs) == 1 else journey_lrs
    contents = [prepared(path, rate, keep_raw=i == 0) for i, (path, rate) in enumerate(zip(stages, rates))]
    resolutions = [resolution for _, resolution in contents]
    if resolutions[0] < MIN_RESOLUTION:
        raise ShipError(f"{stages[0]} is {resolutions[0]} px; the default model must be at least {MIN_RESOLUTION} px")
    if len(set(resolutions)) != len(resolutions):
        raise ShipError(f"two of the files are the same resolution ({', '.join(f'{r} px' for r in resolutions)}); "
                        "ship one file per stage")
    names = [DEFAULT_CHECKPOINT.name] + [f"default-{r}px.pt" for r in resolutions[1:]]
    assets.mkdir(parents=True, exist_ok=True)
    staging = [assets / f".{name}.staged" for name in names]
    try:
        for (ckpt, _), path in zip(contents, staging):
            atomic_torch_save(ckpt, path)
        total = sum(path.stat().st_size for path in staging)
        if total > BUDGET_BYTES:
            raise ShipError(f"the files come to {total / 1e6:.1f} MB, over the {BUDGET_BYTES / 1e6:g} MB budget; "
                            "ship fewer stages or train narrower --channels")
        for old in assets.glob("default*.pt"):
            if old.name not in names:
                old.unlink()
        for path, name in zip(staging, names):
            path.replace(assets / name)
    finally:
        for path in staging:
            path.unlink(missing_ok=True)
    return [(assets / name, (assets / name).stat().st_size) for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stages", type=Path, nargs="+", help="stage files, the default (largest) first")
    parser.add_argument("--journey-lr", type=rates_arg, required=True,
                        help="learning rate that plays the paper's arc on the model (measure it with `journey`): "
                             "one for all files, or one per file in order (1e-4,3e-5)")
    parser.add_argument("--assets", type=Path, default=DEFAULT_CHECKPOINT.parent,
                        help="where to write (default: the package's installation/assets)")
    args = parser.parse_args(argv)
    try:
        written = ship(args.stages, args.journey_lr, args.assets)
    except ShipError as error:
        print(f"ship_default_model: error: {error}", file=sys.stderr)
        return 2
    for path, size in written:
        print(f"wrote {path} ({size / 1e6:.1f} MB)")
    print(f"{sum(size for _, size in written) / 1e6:.1f} MB in all, journey lr "
          f"{', '.join(format(rate, 'g') for rate in args.journey_lr)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
