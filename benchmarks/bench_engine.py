#!/usr/bin/env python3
"""Engine speed: optimiser steps per second, seconds per snapshot and the frame drawer's refresh after a step, with
the device they were measured on.

    python3 benchmarks/bench_engine.py            # tiny + small models on CPU; full StyleGAN1 at 256/512/1024 on CUDA
    python3 benchmarks/bench_engine.py --quick    # a few steps of the tiny model only (smoke test)

Random weights: speed does not depend on what the weights are. "snapshot" is the time the training loop waits
(copying G and Adam state to CPU memory); "write" is the background write of that snapshot to disk. "refresh" is
what the trainer spends after each step handing its weights to the frame drawer (engine/drawer.py: a copy into the
drawer's spare G under its lock), measured while the drawer draws.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from installation.engine import Engine, EngineConfig  # noqa: E402
from installation.engine.config import RenderConfig, WalkConfig  # noqa: E402
from installation.engine.drawer import FrameDrawer, WalkSettings  # noqa: E402
from installation.frames import FrameChannel  # noqa: E402
from installation.models import create_stylegan1  # noqa: E402
from installation.models.stylegan1 import FFHQ_CHANNELS  # noqa: E402

# name, channels from 4 px up, code_dim, n_mlp, resolution
CPU_MODELS = [("tiny 32 px", [32, 32, 16, 16], 32, 2, 32), ("small 64 px", [64, 64, 64, 32, 32], 128, 4, 64)]
CUDA_MODELS = [(f"StyleGAN1 full {r} px", list(FFHQ_CHANNELS), 512, 8, r) for r in (256, 512, 1024)]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_name()}, {torch.get_num_threads()} torch threads)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(name: str, channels: list[int], code_dim: int, n_mlp: int, resolution: int, device: torch.device,
          steps: int, batch: int) -> str:
    gan = create_stylegan1(channels, code_dim=code_dim, n_mlp=n_mlp, resolution=resolution).to(device)
    config = EngineConfig(batch=batch, device=str(device), snapshot_every=10**9, probe_every=10**9)
    with tempfile.TemporaryDirectory() as run_dir:
        engine = Engine(gan, config, run_dir)
        for _ in range(3):  # warm-up: allocator, cudnn autotuning, first Adam state
            engine.step()
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            engine.step()
        sync(device)
        rate = steps / (time.perf_counter() - start)
        engine.store.flush()
        start = time.perf_counter()
        engine.snapshot()
        capture = time.perf_counter() - start
        engine.store.flush()
        total = time.perf_counter() - start
        engine.close(snapshot=False)
    refresh = drawer_refresh(gan, steps)
    mib = sum(p.numel() for p in gan.generator.parameters()) * 4 * 3 / 2**20  # weights + two Adam moments
    return (f"{name:<24} batch {batch}  {rate:8.2f} steps/s  snapshot {capture:6.3f} s in the loop, "
            f"{total - capture:6.3f} s written in background ({mib:.0f} MiB), drawer refresh {1000 * refresh:.2f} ms")


def drawer_refresh(gan, count: int) -> float:
    """Seconds the trainer spends handing its weights to the frame drawer after a step (median), while it draws."""
    walk = WalkConfig(grid=1)
    with FrameChannel.create(gan.resolution, gan.resolution, slots=64) as channel:
        drawer = FrameDrawer(channel.name, walk, RenderConfig(), WalkSettings.start(walk, False))
        drawer.start(gan, 0)
        times = []
        try:
            for k in range(count):
                start = time.perf_counter()
                drawer.follow(gan.generator, k, 0)
                sync(gan.device)
                times.append(time.perf_counter() - start)
        finally:
            drawer.close()
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--quick", action="store_true", help="a few steps of the tiny model only")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    runs = [(torch.device("cpu"), CPU_MODELS[:1] if args.quick else CPU_MODELS)]
    if cuda and not args.quick:
        runs.append((torch.device("cuda"), CPU_MODELS + CUDA_MODELS))
    print(f"torch {torch.__version__}")
    for device, models in runs:
        if args.device == "cuda" and device.type == "cpu":
            continue
        print(f"device: {device_name(device)}")
        for name, channels, code_dim, n_mlp, resolution in models:
            steps = args.steps or (3 if args.quick else 20 if resolution >= 256 else 50)
            print("  " + bench(name, channels, code_dim, n_mlp, resolution, device, steps, args.batch), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
