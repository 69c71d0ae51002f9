#!/usr/bin/env python3
"""Training speed of `run_installation.py train`: seconds per kimg (thousand real images) at every stage.

    python3 benchmarks/bench_train.py                                  # the default 64 px model, batch 32
    python3 benchmarks/bench_train.py --channels 128,128,128,64,32 --batch 64,32:16,64:16 --device cuda

Times `--steps` training steps in the middle of each stage's fade-in (both blocks run there, the slowest part
of a stage) on procedural faces, after two warm-up steps. Use it to plan `--kimg-per-phase` and `--max-minutes`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from bench_engine import device_name, sync  # noqa: E402

from installation.engine.config import resolve_device  # noqa: E402
from installation.training.cli import batch_arg, channels_arg  # noqa: E402
from installation.training.faces import procedural_faces  # noqa: E402
from installation.training.trainer import Trainer, TrainConfig, default_channels  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--channels", type=channels_arg, default=None, help="default: the train command's")
    parser.add_argument("--code-dim", type=int, default=256)
    parser.add_argument("--batch", type=batch_arg, default=batch_arg("32"))
    parser.add_argument("--steps", type=int, default=6, help="timed steps per stage")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    channels = args.channels or default_channels(args.resolution)
    config = TrainConfig(resolution=args.resolution, channels=channels, code_dim=args.code_dim, batch=args.batch)
    images = procedural_faces(256, seed=0, resolution=args.resolution)
    print(f"torch {torch.__version__}; device: {device_name(device)}")
    print(f"channels {','.join(map(str, channels))}, code {args.code_dim}")
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, images, {"count": len(images), "fingerprint": "bench"}, Path(out), device)
        start = 0
        for stage, (resolution, length) in enumerate(zip(config.stages, config.stage_images)):
            trainer.images_seen = start + (length // 4 if stage else 0)  # mid fade-in: both blocks run
            for _ in range(2):
                trainer.train_step()
            sync(device)
            tick, seen = time.perf_counter(), trainer.images_seen
            for _ in range(args.steps):
                trainer.train_step()
            sync(device)
            seconds = time.perf_counter() - tick
            rate = seconds / ((trainer.images_seen - seen) / 1000)
            print(f"  {resolution:4d} px  batch {config.batch_for(resolution):4d}  {rate:8.2f} s/kimg  "
                  f"({args.steps / seconds:.2f} steps/s)", flush=True)
            start += length
    return 0


if __name__ == "__main__":
    sys.exit(main())
