"""Export speed per codec: frames/s of a whole loop export (generator, presenter offscreen, readback, encode) and
of the encoder alone (the same presented pictures, already rendered), at 1920x1080 and a smaller size.

Codecs are measured interleaved, round after round, so a change in the machine's load hits them all alike; the
figures are medians over the rounds.

    python benchmarks/bench_export.py [--frames 30 --rounds 3 --sizes 1920x1080,640x360 --threads 2]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from installation.models import default_checkpoint, load_gan  # noqa: E402
from installation.presets import load_preset  # noqa: E402
from installation.recording import CODECS, VideoEncoder  # noqa: E402
from installation.exports.videos import Stage, export_loop  # noqa: E402
from installation.walks import make_walks, render_walk_frames  # noqa: E402


def encode_only(pictures: list[np.ndarray], path: Path, fps: float, codec: str) -> float:
    """frames/s of the encoder fed pictures already in memory, up to the finished file."""
    start = time.perf_counter()
    height, width, _ = pictures[0].shape
    with VideoEncoder(path, width, height, fps, codec) as video:
        for picture in pictures:
            video.write(picture)
    seconds = time.perf_counter() - start
    path.unlink()
    return len(pictures) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames per export")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="1920x1080,640x360")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gan = load_gan(default_checkpoint(), device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device: {device} ({name}), {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"model: the embedded default, {gan.resolution} px; {args.frames} frames per export at 30 fps, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'size':>10s} {'codec':>7s} {'export fps':>11s} {'encode fps':>11s} {'MB/s of video':>14s}")
    fps = 30.0
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes.split(","):
            width, height = map(int, size.split("x"))
            preset = load_preset("default").replace("display", width=width, height=height, fps=fps)
            stage = Stage(preset)
            walk = make_walks(1, gan.latent_dim, preset.walk.keyframes, args.frames / fps, preset.walk.seed)
            pictures = [stage.show(render_walk_frames(gan, walk, k / fps, preset.walk.truncation))
                        for k in range(args.frames)]
            stage.close()
            exports: dict[str, list[float]] = {codec: [] for codec in CODECS}
            encodes: dict[str, list[float]] = {codec: [] for codec in CODECS}
            sizes: dict[str, float] = {}
            for _ in range(args.rounds):
                for codec in CODECS:
                    out = Path(folder) / f"loop{CODECS[codec].suffix}"
                    report = export_loop(gan, preset, args.frames / fps, codec, False, out, stream=io.StringIO())
                    exports[codec].append(report.frames / report.seconds)
                    sizes[codec] = out.stat().st_size / 2**20 / (report.frames / fps)
                    out.unlink()
                    encodes[codec].append(encode_only(pictures, out, fps, codec))
            for codec in CODECS:
                print(f"{size:>10s} {codec:>7s} {statistics.median(exports[codec]):11.1f} "
                      f"{statistics.median(encodes[codec]):11.1f} {sizes[codec]:14.1f}")


if __name__ == "__main__":
    main()
