"""Command line: `run_installation.py [command] ...`. Every bad input ends in one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .arguments import (UsageError, checked, checkpoint_or_default, default_run_dir, non_negative_float,
                        parse_seeds, positive_float, resolution_arg, size_arg, whole_number)
from .engine.config import LOSSES, check_batch
from .exits import EXIT_TRY_AGAIN, TryAgain, exit_code
from .signals import StopSignals

if TYPE_CHECKING:
    from .presets import Preset


def _load(args: argparse.Namespace, require_discriminator: bool = False):
    from .engine.config import resolve_device
    from .models import load_gan

    gan = load_gan(checkpoint_or_default(args.checkpoint), resolution=args.resolution,
                   device=resolve_device(args.device), use_ema=not args.raw_generator,
                   require_discriminator=require_discriminator)
    classes = gan.describe()["classes"]
    if args.class_index and args.class_index >= classes:
        raise UsageError(f"--class {args.class_index}: this model has {classes or 'no'} classes"
                         + (f"; choose 0..{classes - 1}" if classes else "; drop --class"))
    gan.class_index = args.class_index
    return gan


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
    if facts["classes"]:
        print(f"classes:         {facts['classes']} (conditional: class {facts['class_index']}; pick with --class)")
    if facts["journey_lr"] is not None:
        print(f"journey lr:      {facts['journey_lr']:g} (the rate that plays the paper's arc on this model)")
    print(f"generator:       {facts['generator_parameters']:,} parameters")
    if facts["discriminator"]:
        print(f"discriminator:   {facts['discriminator_parameters']:,} parameters (fine-tuning possible)")
    else:
        print("discriminator:   none (this file can be shown, not fine-tuned)")


def cmd_sample(args: argparse.Namespace) -> None:
    import torch

    from .images import grid, save_image, to_uint8

    gan = _load(args)
    tiles = []
    with torch.no_grad():
        for seed in args.seeds:
            rng = torch.Generator().manual_seed(seed)
            z = torch.randn(1, gan.latent_dim, generator=rng).to(gan.device)
            tiles.append(to_uint8(gan.generate(z, gan.make_noise(1, rng), args.truncation))[0])
    import numpy as np

    save_image(args.out, grid(np.stack(tiles), columns=args.columns))
    print(f"wrote {args.out} ({len(tiles)} samples at {gan.resolution} px, truncation {args.truncation})")


def cmd_journey(args: argparse.Namespace) -> None:
    from .engine import CommandError, ConfigError, EngineConfig, EngineError
    from .journey import MAX_COLUMNS, JourneyError, JourneyRequestError, journey_columns, run_journey

    if args.rows > 16:
        raise UsageError(f"--rows {args.rows}: at most 16 contact-sheet rows")
    if len(journey_columns(args.iterations, args.every)) > MAX_COLUMNS:
        raise UsageError(f"--iterations {args.iterations} --every {args.every} makes more than {MAX_COLUMNS} "
                         "contact-sheet columns; raise --every")
    gan = _load(args, require_discriminator=True)
    asked = {name: value for name in ("lr", "loss", "batch") if (value := getattr(args, name)) is not None}
    try:
        config = EngineConfig(seed=args.seed, device=str(gan.device), snapshot_every=args.snapshot_every, **asked)
        summary = run_journey(gan, args.out, config, args.iterations, args.every, rows=args.rows, asked=asked)
    except TryAgain:
        raise  # held by another installation or journey: a later start may work (exit 75)
    except (ConfigError, EngineError, CommandError, JourneyRequestError) as error:
        raise UsageError(str(error)) from None
    except JourneyError as error:
        print(f"uncanny: journey failed: {error} (outputs so far are in {args.out})", file=sys.stderr)
        raise SystemExit(1) from None
    d_first, d_last = summary["probe_d"]
    div_first, div_last = summary["diversity"]
    changed = "".join(f"; --{name} {_plain(new)} from here (the run was at {_plain(old)})"
                      for name, old, new in summary["applied"])
    resumed = (f", resumed from iteration {summary['resumed_from']} with the run's own seed"
               + (changed or " and settings") if summary["resumed_from"] else "")
    print(f"wrote {args.out}: metrics.jsonl, contact_sheet.png ({summary['rows']} rows x {summary['columns']} "
          f"columns), journey.png, snapshots/{resumed}")
    print(f"iteration {summary['iteration']} at lr {summary['lr']:g}: probe D score {d_first:.4g} -> {d_last:.4g}, "
          f"diversity {div_first:.4g} -> {div_last:.4g}, {summary['rollbacks']} rollbacks"
          f"{', COLLAPSED' if summary['collapsed'] else ''}")


def _plain(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def picture_path(text: str) -> Path:
    """A file name whose extension says the format: .png, .jpg or .jpeg (argparse type)."""
    from .images import IMAGE_FORMATS

    path = Path(text)
    if path.suffix.lower() not in IMAGE_FORMATS:
        raise argparse.ArgumentTypeError(f"unknown picture extension {path.suffix!r} in {text!r}; "
                                         "use .png, .jpg or .jpeg")
    return path


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cmd_run(args: argparse.Namespace) -> None:
    stop: StopSignals = args.stop  # taken by main before the imports below, which load torch and GL (seconds)
    from .engine.config import resolve_device
    from .engine.drawer import poster
    from .engine.runfolder import RunFolder
    from .frames import sweep_stale
    from .live.logfile import log_file
    from .live.run import bind_controls, run
    from .models import CheckpointError, load_gan
    from .models.gan import host_precision
    from .presets import PresetError, load_preset
    from .recording import recover_partials

    def stopped() -> bool:
        """A stop signal during the start-up: one line, and nothing more is started."""
        if stop.requested:
            print(f"uncanny: stopped ({stop.name}) while starting; nothing was started", file=sys.stderr)
        return stop.requested

    preset = load_preset(args.preset)
    preset = preset.replace("model", checkpoint=str(args.checkpoint) if args.checkpoint else None,
                            resolution=args.resolution)
    preset = preset.replace("engine", device=args.device, seed=args.seed)
    preset = preset.replace("walk", seed=args.seed)
    width, height = args.size or (None, None)
    preset = preset.replace("display", fullscreen=args.fullscreen, monitor=args.monitor, width=width,
                            height=height, hud=args.hud or None, keys=False if args.no_keys else None)
    preset = preset.replace("osc", port=args.osc_port, enabled=False if args.no_osc else None)
    preset = preset.replace("http", port=args.http_port)
    if args.monitor is not None and (args.headless or not preset.display.fullscreen):
        ignored_by = "--headless" if args.headless else "a window (--windowed, or fullscreen = false in the preset)"
        print(f"uncanny: warning: --monitor {args.monitor} is ignored with {ignored_by}; it picks the screen for "
              "full-screen", file=sys.stderr)
    checkpoint = checkpoint_or_default(Path(preset.model.checkpoint) if preset.model.checkpoint else None)
    resolve_device(preset.engine.device)
    if stopped():
        return
    # Check the file here, before any window opens or process starts: a bad file is one line and exit 2.
    try:
        gan = load_gan(checkpoint, resolution=preset.model.resolution or None,
                       use_ema=not preset.model.raw_generator, require_discriminator=True)
    except CheckpointError as error:
        if args.checkpoint is None and preset.model.checkpoint:  # the preset chose it: say where to fix it
            raise PresetError(f"{preset.source}: [model] checkpoint: {error}") from None
        raise
    run_dir = args.run_dir or default_run_dir(checkpoint)
    headless = args.headless
    if not headless and not _has_display():
        print("uncanny: no display found ($DISPLAY is not set): running headless", file=sys.stderr)
        headless = True
    if stopped():
        return
    # The ports are bound first (a busy one is one line and exit 75, before anything is written), then the run folder's
    # refusals, before any file in it is touched: one line, exit 2 (or 75 while another installation holds it). Each
    # context is made as the one before it is entered: the recordings folder is judged after the run folder's own
    # checks, since it is usually inside it, and before the log is written there.
    with bind_controls(preset, run_dir) as control, RunFolder(run_dir).hold(gan), \
            _record_folder_checked(preset, run_dir), log_file(run_dir, preset.logs):
        sweep_stale()
        for path in recover_partials(run_dir):
            print(f"uncanny: {path}: a recording cut off by a kill, kept under this playable name", file=sys.stderr)
        print(f"uncanny: {checkpoint} ({gan.format}, {gan.resolution} px); run folder {run_dir} "
              f"(snapshots, metrics; restarting with the same folder resumes)", file=sys.stderr)
        resolution = gan.resolution
        # drawn here on the CPU at once: in bf16 only where this CPU has it (emulated bf16 is many times slower)
        first_picture = poster(gan, preset.walk, preset.display.show_grid, host_precision(preset.render.precision))
        del gan  # the engine process loads its own; this one only drew the first picture
        if stopped():
            return
        if headless:
            until = "Ctrl-C or SIGTERM" + (f" or {args.seconds:g} s" if args.seconds else "")
            print(f"uncanny: headless until {until}, the picture recorded into {run_dir} (the file's name "
                  "follows)", file=sys.stderr)
        report = run(preset, checkpoint, resolution, run_dir, args.seconds, stop, control, first_picture, headless)
    if report.refused:
        raise UsageError(report.error)
    print(f"uncanny: {report.summary(run_dir)}", file=sys.stderr)
    if report.error:
        print(f"uncanny: error: {report.error}", file=sys.stderr)
        raise SystemExit(EXIT_TRY_AGAIN if report.try_again else 1)


def _record_folder_checked(preset: Preset, run_dir: Path) -> contextlib.AbstractContextManager[None]:
    """[record] folder at start: refused in one line naming the file and key where it can never take a recording,
    a warning where it cannot now (the show then starts without recording)."""
    from .engine.config import ConfigError
    from .presets import PresetError

    try:
        if not_now := preset.record.check_folder(run_dir):
            print(f"uncanny: warning: [record] {not_now}", file=sys.stderr)
    except ConfigError as error:
        raise PresetError(f"{preset.source}: [record] {error}") from None
    return contextlib.nullcontext()


def _checkpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, nargs="?", default=None,
                        help="a rosinality StyleGAN1/StyleGAN2, NVlabs StyleGAN2-ADA .pkl or uncanny checkpoint "
                             "(default: the embedded model)")
    parser.add_argument("--resolution", type=resolution_arg, default=None,
                        help="output size for progressive StyleGAN1 files (default: the largest trained)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--raw-generator", action="store_true",
                        help="use the raw generator instead of its moving average (EMA) where the file has both")
    parser.add_argument("--class", dest="class_index", type=whole_number(0), default=0,
                        help="the class a conditional (NVlabs c_dim > 0) model draws, 0..classes-1 (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_installation.py",
        description="uncanny: a StyleGAN fine-tuned live towards what its own discriminator calls fake "
                    "(Broad, Leymarie, Grierson 2020, 'Amplifying The Uncanny').")
    parser.set_defaults(handler=cmd_run)
    live = parser.add_argument_group("the installation (no command)")
    live.add_argument("--checkpoint", type=Path, default=None,
                      help="a checkpoint with its discriminator (default: the embedded model)")
    live.add_argument("--preset", default="default", help="a preset name from presets/ or a .toml file")
    live.add_argument("--resolution", type=resolution_arg, default=None, help="StyleGAN1 output size")
    live.add_argument("--device", default=None, help="engine device: auto, cpu, cuda or cuda:N")
    live.add_argument("--seed", type=whole_number(0), default=None, help="training and walk seed")
    screen = live.add_mutually_exclusive_group()
    screen.add_argument("--fullscreen", dest="fullscreen", action="store_true", default=None,
                        help="full-screen on the chosen monitor (the default preset's choice)")
    screen.add_argument("--windowed", dest="fullscreen", action="store_false", help="a window, for development")
    live.add_argument("--monitor", default=None, help="monitor index (0, 1, ...) or part of its name")
    live.add_argument("--size", type=size_arg, default=None, help="window / headless size, e.g. 1920x1080")
    live.add_argument("--headless", action="store_true",
                      help="no window: render offscreen into RUN_DIR/live-DATE-TIME.mp4 (a new file each start, "
                           "never overwritten) and the last picture into RUN_DIR/last_frame-DATE-TIME.png")
    live.add_argument("--seconds", type=positive_float, default=None, help="stop cleanly after this long")
    live.add_argument("--run-dir", type=Path, default=None,
                      help="run folder for snapshots and metrics (default runs/CHECKPOINT-NAME; reused = resumed)")
    live.add_argument("--hud", action="store_true", help="show iteration, loss, D score and fps")
    live.add_argument("--no-keys", action="store_true", help="ignore the keyboard (gallery use)")
    live.add_argument("--osc-port", type=whole_number(0, 65535), default=None,
                      help="UDP port of the OSC server (default [osc] port, 8000; 0 = any free port)")
    live.add_argument("--no-osc", action="store_true",
                      help="no OSC server (the status page stays; --http-port 0 turns it off)")
    live.add_argument("--http-port", type=whole_number(0, 65535), default=None,
                      help="TCP port of the status page (/ui/) and OSCQuery (default [http] port, 5678; 0 = no HTTP "
                           "server)")
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
    sample.add_argument("--columns", type=whole_number(1), default=None, help="grid columns (default: square)")
    sample.add_argument("--out", type=picture_path, default=Path("grid.png"),
                        help="picture to write, PNG or JPEG by its extension (default grid.png)")
    sample.set_defaults(handler=cmd_sample)

    from .training.cli import add_train_parser

    add_train_parser(commands)

    from .control.cli import add_osc_parser

    add_osc_parser(commands)

    from .exports.cli import add_export_parsers

    add_export_parsers(commands)

    from .service.cli import add_service_parser

    add_service_parser(commands, parser)

    from .display.cli import add_monitors_parser

    add_monitors_parser(commands)

    journey = commands.add_parser("journey", help="run the inverted fine-tuning headless; write metrics, snapshots, "
                                                  "a contact sheet and a plot",
                                  usage="%(prog)s [--checkpoint FILE] [--iterations N] [--every N] [--out DIR] "
                                        "[options]")
    journey.add_argument("--checkpoint", type=Path, default=None,
                         help="a checkpoint that includes its discriminator (StyleGAN1/2 training files, NVlabs "
                              ".pkl, uncanny; default: the embedded model)")
    journey.add_argument("--iterations", type=whole_number(1), default=1000, help="steps to run (default 1000)")
    journey.add_argument("--every", type=whole_number(1), default=100,
                         help="contact-sheet column spacing in iterations (default 100)")
    journey.add_argument("--out", type=Path, default=Path("journey"),
                         help="run folder; an existing run there is resumed (default ./journey)")
    # None = not given: a resumed run keeps its own; given ones apply from the resumed iteration on
    journey.add_argument("--batch", type=checked(int, check_batch), default=None,
                         help="images per step, 1..64 (default 4)")
    journey.add_argument("--lr", type=non_negative_float, default=None,
                         help="learning rate; 0 = the model's own journey rate, or 0.001 for files without one "
                              "(default 0)")
    journey.add_argument("--loss", choices=LOSSES, default=None,
                         help="inverted objective (default logit, the paper's)")
    journey.add_argument("--seed", type=whole_number(0), default=0, help="random seed (default 0)")
    journey.add_argument("--snapshot-every", type=whole_number(1), default=50,
                         help="snapshot spacing in iterations (default 50)")
    journey.add_argument("--rows", type=whole_number(1), default=4, help="contact-sheet rows (default 4)")
    journey.add_argument("--resolution", type=resolution_arg, default=None,
                         help="output size for progressive StyleGAN1 files (default: the largest trained)")
    journey.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    journey.add_argument("--raw-generator", action="store_true",
                         help="fine-tune the raw generator instead of its moving average where the file has both")
    journey.add_argument("--class", dest="class_index", type=whole_number(0), default=0,
                         help="the class a conditional (NVlabs c_dim > 0) model draws and is judged as (default 0)")
    journey.set_defaults(handler=cmd_journey)
    return parser


def main(argv: Sequence[str] | None = None, stop: StopSignals | None = None) -> int:
    """Run one command; a refusal is one line and its exit code (installation/exits.py: 2 for input that can never
    work, 75 for a start that may work later). `stop`: the stop signals as taken by the script before it imported
    this module (run_installation.py); else they are taken here, first: the installation's start-up imports torch and
    loads the model for seconds, and a stop during them must end it with one line, not a traceback (or a silent death
    by SIGTERM or SIGHUP)."""
    stop = stop or StopSignals().__enter__()
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], None] = args.handler
    try:
        if handler is cmd_run:
            args.stop = stop
        else:
            stop.hand_back()  # the other commands take their signals the ordinary way (a Ctrl-C noted: exit 130)
        handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if (code := exit_code(error)) is None:
            raise
        print(f"uncanny: error: {error}", file=sys.stderr)
        return code
    return 0
