"""`loop` and `film`: the exhibition videos of a journey (videos.py) as commands.

Wire them in with `add_export_parsers(commands)` on the main parser's subparsers. torch and GL load only when a
command runs, so `--help` and argument errors stay fast. Both print their figures, then the written file's path as
the last stdout line (so a caller, e.g. the installation's `/uncanny/record/loop`, can read it); bad input is one
line on stderr and exit 2, a failed encode one line and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..arguments import UsageError, positive_float, size_arg, whole_number
from ..recording import CODECS, ENCODERS, EncoderError, choose_encoder


def _video_options(parser: argparse.ArgumentParser, seconds: float | None, fps: float) -> None:
    parser.add_argument("--seconds", type=positive_float, default=seconds, required=seconds is None,
                        help="length of the video" + (f" (default {seconds:g})" if seconds else ""))
    parser.add_argument("--fps", type=positive_float, default=fps, help=f"frames per second (default {fps:g})")
    parser.add_argument("--size", type=size_arg, default=None,
                        help="WIDTHxHEIGHT of the picture (default the preset's [display] size, 1920x1080); "
                             "multiples of 2, or of 4 for hap and hap_q")
    parser.add_argument("--codec", choices=tuple(CODECS), default="h264",
                        help="; ".join(f"{name}: {codec.use}" for name, codec in CODECS.items()) + " (default h264)")
    parser.add_argument("--encoder", choices=ENCODERS, default=None,
                        help="H.264 on the CPU (x264) or on an NVIDIA GPU (nvenc); auto: nvenc where it works "
                             "(default: the preset's [record] encoder)")
    parser.add_argument("--grid", type=whole_number(0), default=0,
                        help="0: one walk (default); N: the N x N population grid")
    parser.add_argument("--walk-seed", type=whole_number(0), default=None,
                        help="which walk(s): the live installation's walk seed (default the preset's)")
    parser.add_argument("--preset", default="default",
                        help="preset for the walk (keyframes, truncation), the picture (mode, letterbox) and the "
                             "render precision (default: presets/default.toml)")
    parser.add_argument("--device", default="auto", help="generator device: cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--threads", type=whole_number(1), default=None,
                        help="torch CPU threads (default torch's own; fewer leaves cores to a live show)")
    parser.add_argument("--out", type=Path, required=True, help="the video file, its extension the codec's")


def add_export_parsers(commands: argparse._SubParsersAction) -> None:
    """Add `loop` and `film` to the CLI's subcommands."""
    loop = commands.add_parser(
        "loop", help="export a frame-exact seamless loop of one snapshot (latent walk, frozen weights)",
        description="Render, offscreen through the screen's presenter, exactly SECONDS x FPS frames of one period "
                    "of a latent walk, so that a player repeating the file shows no seam.")
    source = loop.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path, default=None, help="a checkpoint file (default: the embedded "
                                                                      "model at iteration 0)")
    source.add_argument("--run-dir", type=Path, default=None, help="a run folder: its snapshot at or before "
                                                                   "--iteration (default the newest)")
    loop.add_argument("--iteration", type=whole_number(0), default=None,
                      help="with --run-dir: the snapshot nearest at or before this iteration")
    _video_options(loop, None, 60.0)
    loop.set_defaults(handler=cmd_loop)

    film = commands.add_parser(
        "film", help="render a run's whole journey, iteration 0 to the newest snapshot, as one continuous video",
        description="A slow walk (or the population grid) while the generator weights move linearly from "
                    "snapshot to snapshot, with the iteration as a caption.")
    film.add_argument("--run-dir", type=Path, required=True, help="the run folder whose snapshots to play")
    film.add_argument("--caption", action=argparse.BooleanOptionalAction, default=True,
                      help="show the iteration in the corner (default on)")
    _video_options(film, 120.0, 30.0)
    film.set_defaults(handler=cmd_film)


def _preset(args: argparse.Namespace):
    """The preset with this command's size, fps, walk seed and grid (checked by the preset's own rules)."""
    from ..presets import load_preset
    from .videos import check_output

    preset = load_preset(args.preset)
    width, height = args.size or (None, None)
    preset = preset.replace("display", width=width, height=height, fps=args.fps)
    preset = preset.replace("walk", seed=args.walk_seed, grid=args.grid or None)
    _checked(check_output, args.out, args.codec, preset.display.width, preset.display.height)
    return preset


def _checked(function, *args, **options):
    """Export refusals become usage errors (one line, exit 2)."""
    from .videos import ExportError

    try:
        return function(*args, **options)
    except ExportError as error:
        raise UsageError(str(error)) from None


def _load(path: Path, device_name: str, threads: int | None):
    import torch

    from ..engine.config import resolve_device
    from ..models import load_gan

    if threads:
        torch.set_num_threads(threads)
    return load_gan(path, device=resolve_device(device_name))


def _finish(report, what: str) -> None:
    """The figures, then the path as the last line."""
    print(f"{what}: {report.frames} frames, {report.frames / report.fps:g} s at {report.fps:g} fps, rendered in "
          f"{report.seconds:.1f} s ({report.frames / max(report.seconds, 1e-9):.2f} frames/s)")
    steps = f"frame-to-frame change (mean |difference|, 0-255): median {report.median_step:.3f}, " \
            f"largest {report.max_step:.3f}"
    if what == "loop":
        steps += f"; seam (last frame to first) {report.wrap_step:.3f} = {report.seam_ratio:.2f} x the median"
    print(steps)
    print(report.path.resolve())


def _encoder(args: argparse.Namespace, preset) -> str:
    """The H.264 encoder to use, saying so where NVENC was asked for and does not work here."""
    encoder, note = choose_encoder(args.encoder or preset.record.encoder)
    if note:
        print(f"uncanny: {note}", file=sys.stderr)
    return encoder


def _encode(export, *args, **options) -> object:
    """Run an export with the stop signals noted (the file is finalised between two frames): a failed or stopped
    encode is one line and exit 1."""
    from ..signals import StopSignals
    from .videos import ExportStopped

    try:
        with StopSignals() as stop:
            return _checked(export, *args, stop=stop, **options)
    except (EncoderError, ExportStopped) as error:
        print(f"uncanny: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_loop(args: argparse.Namespace) -> None:
    from .videos import export_loop, snapshot_at_or_before

    if args.iteration is not None and args.run_dir is None:
        raise UsageError("--iteration picks a snapshot of a run folder; give --run-dir too")
    preset = _preset(args)
    if args.run_dir is not None:
        iteration, path = _checked(snapshot_at_or_before, args.run_dir, args.iteration)
    else:
        from ..models import default_checkpoint

        iteration, path = 0, args.checkpoint or default_checkpoint()
        if path is None:
            raise UsageError("the embedded default model is missing from this installation (installation/assets/"
                             "default.pt); reinstall uncanny, or pass --checkpoint")
    gan = _load(path, args.device, args.threads)
    codec = CODECS[args.codec]
    print(f"loop of {path}{f' (iteration {iteration})' if args.run_dir else ''}: {args.seconds:g} s, "
          f"{preset.display.width}x{preset.display.height}, {args.codec} ({codec.use})", file=sys.stderr)
    report = _encode(export_loop, gan, preset, args.seconds, args.codec, args.grid > 0, args.out,
                     encoder=_encoder(args, preset))
    _finish(report, "loop")


def cmd_film(args: argparse.Namespace) -> None:
    from .videos import Journey, export_film, snapshot_files

    preset = _preset(args)
    journey = Journey(_checked(snapshot_files, args.run_dir))
    gan = _load(journey.files[journey.iterations[0]], args.device, args.threads)
    print(f"film of {args.run_dir}: iterations {journey.iterations[0]} to {journey.iterations[-1]} "
          f"({len(journey.iterations)} snapshots) in {args.seconds:g} s, {preset.display.width}x"
          f"{preset.display.height}, {args.codec}", file=sys.stderr)
    report = _encode(export_film, gan, journey, preset, args.seconds, args.codec, args.grid > 0, args.caption,
                     args.out, encoder=_encoder(args, preset))
    _finish(report, "film")
