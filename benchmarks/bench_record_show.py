#!/usr/bin/env python3
"""What a live recording costs the whole show: the installation (the engine training and drawing frames in its own
process) on an offscreen 1080p display held to `--refresh` Hz, blocks with and without a recording interleaved.

bench_record.py measures the display alone; here the engine competes for the same cores, as on the show machine.
Figures: presented fps, training steps/s, generator frames/s, and the recording's frames (repeated, dropped).

    python3 benchmarks/bench_record_show.py [--size 1920x1080 --refresh 30 --seconds 6 --rounds 3 --warmup 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import installation  # noqa: E402,F401  # first: its thread policy goes before torch (installation/__init__.py)

from bench_engine import cpu_name  # noqa: E402
from installation.arguments import size_arg  # noqa: E402
from installation.control.config import OscConfig  # noqa: E402
from installation.control.service import ControlService  # noqa: E402
from installation.display.offscreen import Offscreen  # noqa: E402
from installation.live.run import live_show  # noqa: E402
from installation.models import default_checkpoint, load_gan  # noqa: E402
from installation.presets import Preset  # noqa: E402
from installation.display.config import DisplayConfig  # noqa: E402
from installation.recording import live  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=size_arg, default=(1920, 1080))
    parser.add_argument("--refresh", type=float, default=30.0, help="hold the display to this many Hz")
    parser.add_argument("--seconds", type=float, default=6.0, help="per block")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of blocks (without, with a recording)")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--nice", type=int, default=live.LIVE_NICE, help="ffmpeg's CPU priority relative to this")
    args = parser.parse_args()
    live.LIVE_NICE = args.nice
    width, height = args.size
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = default_checkpoint()
        resolution = load_gan(checkpoint, require_discriminator=True).resolution
        preset = Preset(display=DisplayConfig(width=width, height=height))
        surface = Offscreen(width, height)
        ctx = surface.ctx
        results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        with surface, live_show(preset, checkpoint, resolution, Path(tmp) / "run", surface,
                                ControlService(OscConfig(enabled=False))) as show:
            def block(seconds: float) -> dict[str, float]:
                start, count = time.monotonic(), 0
                frames, steps = show.picture.last_sequence, show.supervisor.state.iteration
                while time.monotonic() - start < seconds:
                    surface.begin()
                    show.tick()
                    ctx.finish()  # a refresh counts once llvmpipe has drawn it, as a window's swap waits
                    count += 1
                    time.sleep(max(0.0, start + count / args.refresh - time.monotonic()))
                elapsed = time.monotonic() - start
                return {"fps": count / elapsed, "steps": (show.supervisor.state.iteration - steps) / elapsed,
                        "frames": (show.picture.last_sequence - frames) / elapsed}

            while show.supervisor.state.status != "running":
                block(0.2)
            block(args.warmup)
            print(f"device: {cpu_name()}, display {ctx.info['GL_RENDERER']}; {width}x{height} held to "
                  f"{args.refresh:g} Hz, the embedded model training; ffmpeg nice {args.nice}; "
                  f"{args.rounds} x 2 blocks of {args.seconds:g} s")
            for _ in range(args.rounds):
                for recording in (False, True):
                    if recording:
                        show.recorder.start(None, show.supervisor.state.iteration, (width, height))
                    figures = block(args.seconds)
                    if recording:
                        show.recorder.stop()
                        counts = show.recorder.counts
                        figures.update(recorded=counts.frames, repeated=counts.repeated, dropped=counts.dropped)
                    results[recording].append(figures)
                    extra = (f"; file {counts.frames} frames, {counts.repeated} repeated, {counts.dropped} dropped"
                             if recording else "")
                    print(f"  {'recording' if recording else 'plain    '}: {figures['fps']:5.1f} fps, "
                          f"{figures['steps']:4.2f} steps/s, {figures['frames']:4.1f} generator frames/s{extra}")
    median = {key: {rec: statistics.median(r[key] for r in results[rec]) for rec in (False, True)}
              for key in ("fps", "steps", "frames")}
    print(f"median without / with a recording: display {median['fps'][False]:.1f} / {median['fps'][True]:.1f} fps "
          f"(cost {100 * (1 - median['fps'][True] / median['fps'][False]):.0f} %), training "
          f"{median['steps'][False]:.2f} / {median['steps'][True]:.2f} steps/s, generator "
          f"{median['frames'][False]:.1f} / {median['frames'][True]:.1f} frames/s; "
          f"{sum(r['dropped'] for r in results[True])} dropped, {sum(r['repeated'] for r in results[True])} repeated "
          f"in {sum(r['recorded'] for r in results[True])} recorded frames")


if __name__ == "__main__":
    main()
