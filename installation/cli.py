"""Command line: `run_installation.py [command] ...`. Every bad input ends in one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad user input found after parsing; printed as one line, exit code 2."""


def parse_seeds(text: str) -> list[int]:
    """'0-15' or '1,4,7-9' -> a list of seeds (argparse type)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            lo, hi = int(first), int(last or first)
            if lo < 0 or hi < lo:
                raise ValueError
            seeds.extend(range(lo, hi + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad seed list {text!r}; write e.g. 0-15 or 1,4,7-9") from None
    if len(seeds) > 1024:
        raise argparse.ArgumentTypeError(f"{len(seeds)} seeds is too many for one grid; use at most 1024")
    return seeds


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def resolution_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 4 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"resolution must be a power of two >= 4 (e.g. 256), got {text!r}")
    return value


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is available here; use --device cpu")
    return name


def _load(args: argparse.Namespace, require_discriminator: bool = False):
    from .models import load_gan

    return load_gan(args.checkpoint, resolution=args.resolution, device=_device(args.device),
                    use_ema=not args.raw_generator, require_discriminator=require_discriminator)


def cmd_inspect(args: argparse.Namespace) -> None:
    gan = _load(args)
    facts = gan.describe()
    if args.json:
        print(json.dumps(facts, indent=2))
        return
    print(f"file:            {facts['source']}")
    print(f"format:          {facts['format']} ({facts['arch']})")
    print(f"resolutions:     {', '.join(map(str, facts['trained_resolutions']))} px (using {facts['resolution']})")
    print(f"latent size:     {facts['latent_dim']}")
    print(f"generator:       {facts['generator_parameters']:,} parameters")
    if facts["discriminator"]:
        print(f"discriminator:   {facts['discriminator_parameters']:,} parameters (fine-tuning possible)")
    else:
        print("discriminator:   none (this file can be shown, not fine-tuned)")


def cmd_sample(args: argparse.Namespace) -> None:
    import torch

    from .images import grid, save_png, to_uint8

    gan = _load(args)
    tiles = []
    with torch.no_grad():
        for seed in args.seeds:
            rng = torch.Generator().manual_seed(seed)
            z = torch.randn(1, gan.latent_dim, generator=rng).to(gan.device)
            tiles.append(to_uint8(gan.generate(z, gan.make_noise(1, rng), args.truncation))[0])
    import numpy as np

    save_png(args.out, grid(np.stack(tiles), columns=args.columns))
    print(f"wrote {args.out} ({len(tiles)} samples at {gan.resolution} px, truncation {args.truncation})")


def cmd_run(args: argparse.Namespace) -> None:
    raise UsageError("the live installation (engine + display) is not built yet in this release; "
                     "available now: inspect and sample (see --help)")


def _checkpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a rosinality StyleGAN1/StyleGAN2 or uncanny checkpoint")
    parser.add_argument("--resolution", type=resolution_arg, default=None,
                        help="output size for progressive StyleGAN1 files (default: the largest trained)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--raw-generator", action="store_true",
                        help="use the raw generator instead of its moving average (EMA) where the file has both")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_installation.py",
        description="uncanny: a StyleGAN fine-tuned live towards what its own discriminator calls fake "
                    "(Broad, Leymarie, Grierson 2020, 'Amplifying The Uncanny').")
    parser.set_defaults(handler=cmd_run)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    inspect = commands.add_parser("inspect", help="describe a checkpoint: format, resolutions, sizes, D present")
    _checkpoint_options(inspect)
    inspect.add_argument("--json", action="store_true", help="print the facts as JSON")
    inspect.set_defaults(handler=cmd_inspect)

    sample = commands.add_parser("sample", help="render a grid of samples from a checkpoint to a PNG")
    _checkpoint_options(sample)
    sample.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-15"), help="e.g. 0-15 or 1,4,7-9")
    sample.add_argument("--truncation", type=positive_float, default=0.7,
                        help="pull latents towards the mean: 1 = none, 0.7 = typical (default)")
    sample.add_argument("--columns", type=int, default=None, help="grid columns (default: square)")
    sample.add_argument("--out", type=Path, default=Path("grid.png"), help="PNG to write (default grid.png)")
    sample.set_defaults(handler=cmd_sample)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch shares few cores with GL and ffmpeg
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], None] = args.handler
    from .models import CheckpointError

    try:
        handler(args)
    except (CheckpointError, UsageError) as error:
        print(f"uncanny: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    return 0
