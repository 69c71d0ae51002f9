#!/usr/bin/env python3
"""The whole installation at once: display fps, generator frames/s and training steps/s, with the device.

    python3 benchmarks/bench_live.py                       # the embedded 64 px default model, 1920x1080, 20 s
    python3 benchmarks/bench_live.py --checkpoint FILE --seconds 60 --size 3840x2160

The display renders offscreen (EGL) at the requested size as fast as it can (no vsync, no video encoding), while
the engine process trains and draws walk frames; all three rates are measured over the same seconds after a
warm-up. On a window the rate is capped at the monitor's refresh rate by vsync.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import installation  # noqa: E402,F401  # first: its thread policy goes before torch (installation/__init__.py)
import torch  # noqa: E402

from bench_engine import cpu_name  # noqa: E402
from installation.control.config import OscConfig  # noqa: E402
from installation.control.service import ControlService  # noqa: E402
from installation.display.offscreen import Offscreen  # noqa: E402
from installation.live.run import live_show  # noqa: E402
from installation.arguments import size_arg  # noqa: E402
from installation.engine import EngineConfig  # noqa: E402
from installation.models import default_checkpoint, load_gan  # noqa: E402
from installation.presets import Preset  # noqa: E402
from installation.display.config import DisplayConfig  # noqa: E402
from installation.engine.config import RenderConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--size", type=size_arg, default=(1920, 1080))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=EngineConfig.threads,
                        help="torch threads in the engine process (default: the preset's, 0 = all cores but one)")
    parser.add_argument("--grid", action="store_true", help="measure the 3 x 3 population view")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or default_checkpoint()
        resolution = load_gan(checkpoint, require_discriminator=True).resolution
        width, height = args.size
        preset = Preset(engine=EngineConfig(device=args.device, threads=args.threads),
                        display=DisplayConfig(width=width, height=height, show_grid=args.grid),
                        render=RenderConfig())
        surface = Offscreen(width, height)
        ctx = surface.ctx
        with surface, live_show(preset, checkpoint, resolution, Path(tmp) / "run", surface,
                                ControlService(OscConfig(enabled=False))) as loop:
            def measure(seconds: float) -> tuple[int, float, int, int]:
                refreshes, end = 0, time.monotonic() + seconds
                while time.monotonic() < end:
                    surface.begin()
                    loop.tick()
                    ctx.finish()  # count a refresh only once llvmpipe / the GPU has drawn it
                    refreshes += 1
                return refreshes, seconds, loop.picture.last_sequence, loop.supervisor.state.iteration

            while loop.supervisor.state.status != "running":
                measure(0.2)
            measure(args.warmup)
            _, _, frames0, steps0 = measure(0.01)
            refreshes, seconds, frames1, steps1 = measure(args.seconds)
        print(f"device: engine {preset.engine.device} ({torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_name()}), "
              f"display {ctx.info['GL_RENDERER']}")
        print(f"model: {checkpoint.name} at {resolution} px; screen {width}x{height}; "
              f"{'3 x 3 grid' if args.grid else 'one walk'}; render share {preset.render.share}")
        print(f"display: {refreshes / seconds:.1f} fps | generator: {(frames1 - frames0) / seconds:.1f} frames/s | "
              f"training: {(steps1 - steps0) / seconds:.2f} steps/s (batch {preset.engine.batch})")


if __name__ == "__main__":
    main()
