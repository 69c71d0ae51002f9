"""The `train` command: progressive StyleGAN1 training in resumable chunks, and `--evaluate` for a trained D.

Wire it in with `add_train_parser(commands)` on the main parser's subparsers. torch loads only when the
command runs, so `--help` and argument errors stay fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .. import arguments

# Options that decide the weights: None means "the stored value on resume, else the default".
CONFIG_OPTIONS = ("resolution", "channels", "code_dim", "n_mlp", "kimg_per_phase", "batch", "lr", "r1",
                  "r1_every", "seed", "total_kimg")


def channels_arg(text: str) -> tuple[int, ...]:
    """'256,256,256,128,64' -> widths per resolution from 4 px up."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"bad channel list {text!r}; write widths from 4 px up, e.g. 256,256,128")
    return widths


def per_stage_arg(what: str, parse_value, example: str):
    """An argparse type for '32' or '32,8:128,16:64': a value for every stage, optionally per resolution (key 0 =
    the rest)."""
    def parse(text: str) -> tuple[tuple[int, Any], ...]:
        pairs = []
        try:
            for part in text.split(","):
                resolution, _, value = part.strip().rpartition(":")
                pairs.append((arguments.resolution_arg(resolution) if resolution else 0, parse_value(value)))
        except (ValueError, argparse.ArgumentTypeError):
            pairs = []
        if not pairs:
            raise argparse.ArgumentTypeError(f"bad {what} {text!r}; write e.g. {example}")
        return tuple(pairs)
    return parse


def _batch_size(text: str) -> int:
    if int(text) < 2:
        raise ValueError("a batch needs at least 2 images")
    return int(text)


def _kimg(text: str) -> float:
    return arguments.positive_float(text)


batch_arg = per_stage_arg("batch", _batch_size, "32 or 32,8:128,16:64 (sizes >= 2)")
kimg_arg = per_stage_arg("--kimg-per-phase", _kimg, "60 or 60,8:15,16:40 (thousands of images > 0)")


def add_train_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `train` to the CLI's subcommands (the handler is set with set_defaults, as for `sample`)."""
    train = commands.add_parser(
        "train", help="train a small progressive StyleGAN1 G+D on face images (resumable chunks)",
        usage="%(prog)s --data DATA --out DIR [options]  |  %(prog)s --data HELD_OUT --evaluate CHECKPOINT",
        description="Train the project's own StyleGAN1 G+D. Re-running with the same --out resumes from "
                    "DIR/checkpoint.pt; settings left out are taken from it, different ones are refused.")
    train.add_argument("--data", type=Path, required=True,
                       help="a .npz from tools/make_face_data.py or a folder of PNG/JPEG images")
    train.add_argument("--out", type=Path, help="run folder: checkpoint.pt, stage-<R>px.pt, samples/")
    model = train.add_argument_group("model and schedule (fixed for a run)")
    model.add_argument("--resolution", type=arguments.resolution_arg, help="final size (default 64)")
    model.add_argument("--channels", type=channels_arg,
                       help="widths per resolution from 4 px (default min(256, 2048/R): 256,256,128,64,32 at 64)")
    model.add_argument("--code-dim", type=arguments.whole_number(1), help="z and w size (default 256)")
    model.add_argument("--n-mlp", type=arguments.whole_number(1), help="mapping network layers (default 4)")
    model.add_argument("--kimg-per-phase", type=kimg_arg,
                       help="thousands of real images per phase, optionally per resolution: 60,8:15 (each stage "
                            "fades in, then stabilises; default 150)")
    model.add_argument("--total-kimg", type=arguments.positive_float,
                       help="stop at this many kimg (default: the end of the last stage); may be raised on resume")
    model.add_argument("--batch", type=batch_arg, help="batch size, optionally per resolution: 32,8:128 (default 32)")
    model.add_argument("--lr", type=arguments.positive_float, help="Adam learning rate (default 0.001)")
    model.add_argument("--r1", type=arguments.non_negative_float, help="R1 penalty weight gamma, 0 = off (default 10)")
    model.add_argument("--r1-every", type=arguments.whole_number(1), help="lazy R1: apply it every N steps (default 4)")
    model.add_argument("--seed", type=arguments.whole_number(0), help="seeds weights, data order and noise (default 0)")
    run = train.add_argument_group("this run")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--max-minutes", type=arguments.positive_float,
                     help="save and stop before this many minutes; run again to continue")
    run.add_argument("--max-steps", type=arguments.whole_number(1), help="save and stop after this many steps")
    run.add_argument("--sample-every-kimg", type=arguments.positive_float, default=20.0,
                     help="write samples/kimgNNNNNN.png (fixed seeds) this often (default 20)")
    run.add_argument("--start-from", type=Path, metavar="STAGE_FILE",
                     help="a new --out goes on training this stage file's G, EMA G and D (e.g. the embedded "
                          "default.pt) from the kimg it was saved at, with its settings; raise --total-kimg")
    run.add_argument("--evaluate", type=Path, metavar="CHECKPOINT",
                     help="instead of training: print the ROC AUC of this checkpoint's D on --data (held-out "
                          "images) vs its G's samples")
    run.add_argument("--eval-count", type=arguments.whole_number(1), help="use at most this many --data images")
    train.set_defaults(handler=cmd_train)
    return train


def _device(name: str):
    import torch

    from ..engine.config import resolve_device

    device = resolve_device(name)  # a missing CUDA device is one line (exit 2, or 75 where it may come back)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # shapes change only at stage boundaries
    return device


def cmd_train(args: argparse.Namespace) -> None:
    started = time.monotonic()  # --max-minutes counts data loading too
    from . import trainer
    from .data import TrainingError, describe_data, load_images
    from .evaluate import evaluate_checkpoint

    device = _device(args.device)
    try:
        if args.evaluate is not None and args.start_from is not None:
            raise arguments.UsageError("--evaluate scores a checkpoint and --start-from trains; give one of them")
        if args.evaluate is not None:
            auc, count, gan = evaluate_checkpoint(args.evaluate, args.data, args.eval_count, device)
            print(f"D ROC AUC {auc:.4f}: {count} images from {args.data} vs {count} samples, "
                  f"{args.evaluate} at {gan.resolution} px")
            return
        if args.out is None:
            raise arguments.UsageError("train needs --out DIR (or --evaluate CHECKPOINT)")
        path = args.out / trainer.CHECKPOINT_NAME
        ckpt = trainer.read_checkpoint(args.out)
        requested = {name: getattr(args, name) for name in CONFIG_OPTIONS}
        start_from = None
        if args.start_from is not None and ckpt is not None:
            if (ckpt.get("started_from") or {}).get("file") != args.start_from.name:
                raise TrainingError(f"{args.out} already holds a run; leave out --start-from to resume it, or "
                                    "use a new --out")
            # the same command again after a chunk: resume the run that began from this file
        elif args.start_from is not None:
            stage_file = trainer.read_stage_file(args.start_from)
            start_from = (args.start_from, stage_file)
            config = trainer.resolve_config(requested, {"config": stage_file["meta"]["training"]}, args.start_from,
                                            "leave it out to go on with the file's settings")
            if config.total_images <= round(stage_file["meta"]["kimg"] * 1000):
                raise TrainingError(f"{args.start_from} is already at {stage_file['meta']['kimg']:g} kimg; pass "
                                    "--total-kimg above that to train on")
        if start_from is None:
            config = trainer.resolve_config(requested, ckpt, path)
        images = load_images(args.data, config.resolution)
        facts = describe_data(args.data, images)
        if ckpt is not None:
            trainer.check_data(facts, ckpt, path, args.data)
        elif start_from is not None:
            trained_on = start_from[1]["meta"].get("data") or {}
            if trained_on.get("fingerprint") != facts["fingerprint"]:
                print(f"note: {args.start_from} was trained on other images than {args.data}; training goes on with "
                      "these", file=sys.stderr)
        run = trainer.Trainer(config, images, facts, args.out, device, ckpt, start_from)
    except TrainingError as error:
        raise arguments.UsageError(str(error)) from None
    at = f"{run.images_seen / 1000:.1f} kimg"
    begin = f"resuming at {at}" if ckpt else f"starting from {args.start_from} at {at}" if start_from else "starting"
    print(f"{begin}: {len(images)} images, {' -> '.join(f'{r}px' for r in config.stages)}, "
          f"{config.total_images / 1000:g} kimg, on {device}", file=sys.stderr)
    reason = run.run(args.max_minutes, args.max_steps, args.sample_every_kimg, started)
    rate = run.elapsed_s / (run.images_trained / 1000) if run.images_trained else float("nan")
    print(f"{reason} at {run.images_seen / 1000:.1f} of {config.total_images / 1000:g} kimg, {run.iteration} steps, "
          f"{rate:.2f} s/kimg so far; {'done' if reason == 'finished' else 'run the same command to continue'}: "
          f"{args.out}")
