"""Display frame rate of the Presenter into an offscreen EGL framebuffer (no window, no vsync).

Every displayed frame uploads a new generator frame (the worst case: a generator as fast as the display) and
waits for the GL to finish, so the figures are the cost of present + upload. CPU ms counts all threads of this
process (llvmpipe renders on its own threads), which is what a software renderer takes from the generator.

    python benchmarks/bench_display.py [--width 1920 --height 1080 --seconds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from installation.display.offscreen import Offscreen  # noqa: E402
from installation.display.presenter import Presenter  # noqa: E402

# name, frames per upload (N, size), scaling mode, whether a crossfade is running in every displayed frame
SCENARIOS = [
    ("present 256 px, fit", (1, 256), "fit", False),
    ("present 256 px, fill", (1, 256), "fill", False),
    ("present 1024 px, fit", (1, 1024), "fit", False),
    ("crossfade 256 px, fit", (1, 256), "fit", True),
    ("crossfade 256 px, fill", (1, 256), "fill", True),
    ("grid 4x4 x 128 px, fit, crossfade", (16, 128), "fit", True),
    ("grid 3x3 x 256 px, fill, crossfade", (9, 256), "fill", True),
]


def measure(screen: Offscreen, presenter: Presenter, frames: np.ndarray, fade: bool, seconds: float
            ) -> tuple[float, float]:
    """(wall ms, CPU ms) per displayed frame."""
    presenter.crossfade = 1e9 if fade else 0.0  # a fade that never ends: both mosaics filtered every frame
    count, t = 0, 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds or count < 5:
        presenter.set_grid(frames[count % 2], t)  # alternate two batches so every upload is real data
        presenter.render(t + 0.5)
        screen.ctx.finish()
        count, t = count + 1, t + 1 / 60
    return (time.perf_counter() - wall) / count * 1000, (time.process_time() - cpu) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--seconds", type=float, default=2.0, help="per scenario")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with Offscreen(args.width, args.height) as screen:
        info = screen.ctx.info
        print(f"renderer: {info['GL_RENDERER']} | {info['GL_VERSION']}")
        print(f"cpus: {os.cpu_count()}, LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS', 'default')}, "
              f"load average {os.getloadavg()[0]:.2f}, target {args.width}x{args.height}")
        print(f"{'scenario':40s} {'fps':>7s} {'ms/frame':>9s} {'CPU ms':>8s}")
        for name, (count, size), mode, fade in SCENARIOS:
            presenter = Presenter(screen.ctx, args.width, args.height, mode=mode)
            frames = rng.integers(0, 256, (2, count, size, size, 3), dtype=np.uint8)
            presenter.set_grid(frames[1], -1.0)  # so the first measured frame has one to fade from
            wall_ms, cpu_ms = measure(screen, presenter, frames, fade, args.seconds)
            print(f"{name:40s} {1000 / wall_ms:7.1f} {wall_ms:9.1f} {cpu_ms:8.1f}")
            presenter.release()


if __name__ == "__main__":
    main()
