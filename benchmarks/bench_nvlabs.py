#!/usr/bin/env python3
"""Generator forward at 256 px: NVlabs StyleGAN2-ADA and StyleGAN3 (as read from .pkl files) next to rosinality's
StyleGAN2.

    python3 benchmarks/bench_nvlabs.py                      # batch 1 and 4, median of 5 (CPU) or 20 (CUDA) runs
    python3 benchmarks/bench_nvlabs.py --batches 1 --runs 3
    python3 benchmarks/bench_nvlabs.py --quick              # batch 1, 2 runs (smoke test)

Random weights, fixed (stored) noise, no gradients, fp32. "NVlabs 256 (cbase 32768)" has the same widths per
resolution as rosinality's channel_multiplier 2, so those two rows compare the implementations; "paper256"
(cbase 16384, the stylegan2-ada --cfg=paper256 size) is the smaller network many 256 px files use; StyleGAN3-t
is stylegan3's --cfg=stylegan3-t at 256 px (cbase 32768).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench_engine import device_name, sync  # noqa: E402
from installation.models import stylegan2, stylegan2_ada, stylegan3  # noqa: E402


def nvlabs(channel_base: int) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    config = stylegan2_ada.generator_config({
        "z_dim": 512, "w_dim": 512, "c_dim": 0, "img_resolution": 256, "img_channels": 3,
        "mapping_kwargs": {"num_layers": 8},
        "synthesis_kwargs": {"channel_base": channel_base, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256}})
    g = stylegan2_ada.Generator(config)
    return g, lambda z: g(z, None)


def nvlabs_sg3() -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    config = stylegan3.generator_config({
        "z_dim": 512, "w_dim": 512, "c_dim": 0, "img_resolution": 256, "img_channels": 3,
        "mapping_kwargs": {"num_layers": 2}, "channel_base": 32768, "channel_max": 512, "num_fp16_res": 4,
        "conv_clamp": 256, "magnitude_ema_beta": 0.999})
    g = stylegan3.Generator(config)
    return g, lambda z: g(z, None)


def rosinality() -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    g = stylegan2.Generator(256, 512, 8, channel_multiplier=2)
    return g, lambda z: g([z], randomize_noise=False)[0]


MODELS = {"NVlabs 256 (cbase 32768)": lambda: nvlabs(32768), "rosinality 256 (cm 2)": rosinality,
          "NVlabs paper256 (cbase 16384)": lambda: nvlabs(16384), "NVlabs StyleGAN3-t 256 (cbase 32768)": nvlabs_sg3}


@torch.no_grad()
def bench(build: Callable, device: torch.device, batch: int, runs: int) -> tuple[float, int]:
    module, forward = build()
    module.to(device).eval()
    z = torch.randn(batch, 512, device=device)
    forward(z)  # warm-up: allocator, cudnn autotuning
    times = []
    for _ in range(runs):
        sync(device)
        start = time.perf_counter()
        forward(z)
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), sum(p.numel() for p in module.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--quick", action="store_true", help="batch 1, two runs")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per row")
    parser.add_argument("--batches", default="1,4", help="batch sizes, comma-separated (default 1,4)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    device = torch.device("cuda" if cuda else "cpu")
    runs = args.runs or (2 if args.quick else 20 if cuda else 5)
    print(f"torch {torch.__version__}\ndevice: {device_name(device)}")
    for batch in (1,) if args.quick else [int(b) for b in args.batches.split(",")]:
        for name, build in MODELS.items():
            seconds, params = bench(build, device, batch, runs)
            print(f"  {name:<36} batch {batch}  median {seconds * 1000:8.1f} ms  {batch / seconds:7.2f} images/s  "
                  f"({params / 1e6:.1f} M parameters, {runs} runs)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
