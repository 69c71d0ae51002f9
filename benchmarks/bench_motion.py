#!/usr/bin/env python3
"""Is the motion smooth? Frame-to-frame change of what is presented, while the engine trains.

    python3 benchmarks/bench_motion.py                         # headless, in this process: the presented frames
    python3 benchmarks/bench_motion.py --window                # a window under $DISPLAY (Xvfb), captured by x11grab
    python3 benchmarks/bench_motion.py --video runs/default/live-20261201-213000.mp4   # a recorded video

Prints, over the measured seconds (after `--skip` seconds of start-up): the share of frame-to-frame changes that
are zero (mean absolute change below 0.01 of a grey level), the 99th percentile change against the median (a jump
shows as a large ratio), and the frames that are black after the first two seconds; with the device. The targets
of issue 18: zero at most 5 %, p99 at most 3x the median, no black frames after 2 s. A recorded H.264 file reads
worse than it looks: the encoder leaves nearly still areas untouched for a few frames.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imageio_ffmpeg  # noqa: E402
import numpy as np  # noqa: E402

from bench_engine import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def report(frames: list[np.ndarray], fps: float, what: str) -> None:
    changes = np.array([np.abs(a.astype(np.int16) - b).mean() for a, b in zip(frames, frames[1:])])
    black = [i for i, f in enumerate(frames) if i >= 2 * fps and f.max() < 16]
    median = float(np.median(changes))
    print(f"{what}: {len(frames)} frames at {fps:g} fps; zero changes {100 * (changes < 0.01).mean():.1f} %; "
          f"median change {median:.3f}, p99 {np.percentile(changes, 99):.3f} ({np.percentile(changes, 99) / median:.2f}x "
          f"the median), max {changes.max():.3f}; black frames after 2 s: {len(black)}")


def headless(args: argparse.Namespace) -> None:
    from installation.display.offscreen import Offscreen
    from installation.control.service import ControlService
    from installation.live.run import live_show
    from installation.engine.drawer import poster
    from installation.models import default_checkpoint, load_gan
    from installation.presets import Preset
    from installation.control.config import OscConfig
    from installation.display.config import DisplayConfig

    checkpoint = args.checkpoint or default_checkpoint()
    gan = load_gan(checkpoint, require_discriminator=True)
    width, height = args.size
    preset = Preset(display=DisplayConfig(width=width, height=height), osc=OscConfig(enabled=False))
    first = poster(gan, preset.walk, False, preset.render.precision)
    surface = Offscreen(width, height)
    ctx = surface.ctx
    frames = []
    resolution = gan.resolution
    del gan
    with tempfile.TemporaryDirectory() as tmp, surface, \
            live_show(preset, checkpoint, resolution, Path(tmp) / "run", surface, ControlService(preset.osc),
                      poster=first) as loop:
        start = due = time.monotonic()
        while time.monotonic() - start < args.skip + args.seconds:
            surface.begin()
            loop.tick()
            image = surface.read()
            if time.monotonic() - start >= args.skip:
                frames.append(image)
            due += 1 / args.fps
            time.sleep(max(0.0, due - time.monotonic()))
        steps, delay = loop.supervisor.state.steps_per_second, loop.picture.motion.delay
    print(f"device: {cpu_name()}, display {ctx.info['GL_RENDERER']}; {checkpoint.name}, {width}x{height}, training at "
          f"{steps:.2f} steps/s, playback {delay:.2f} s behind real time")
    report(frames, args.fps, "presented (headless)")


def window(args: argparse.Namespace) -> None:
    width, height = args.size
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.Popen([sys.executable, str(ROOT / "run_installation.py"), "--windowed", "--no-osc",
                                "--http-port", "0",
                                "--size", f"{width}x{height}", "--run-dir", str(Path(tmp) / "run"),
                                "--seconds", str(args.skip + args.seconds + 5)], stderr=subprocess.DEVNULL)
        time.sleep(args.skip)
        grab = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "x11grab",
                               "-framerate", str(args.fps), "-video_size", f"{width}x{height}",
                               "-i", os.environ["DISPLAY"], "-t", str(args.seconds), "-f", "rawvideo",
                               "-pix_fmt", "rgb24", "-"], capture_output=True, check=True)
        run.send_signal(15)
        run.wait(60)
    data = np.frombuffer(grab.stdout, np.uint8)
    frames = list(data[:len(data) // (width * height * 3) * width * height * 3].reshape(-1, height, width, 3))
    print(f"device: {cpu_name()}; window {width}x{height} under {os.environ['DISPLAY']}, x11grab (raw, no encoding)")
    report(frames, args.fps, "window capture")


def video(args: argparse.Namespace) -> None:
    reader = imageio_ffmpeg.read_frames(str(args.video))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]
    report(frames[round(args.skip * meta["fps"]):], meta["fps"], f"decoded {args.video.name}")


def main() -> None:
    from installation.arguments import size_arg

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--size", type=size_arg, default=(640, 360))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--skip", type=float, default=0.0, help="start-up seconds left out (black frames count "
                                                                 "only after 2 s anyway)")
    parser.add_argument("--fps", type=float, default=30.0)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--window", action="store_true", help="capture a window run with x11grab")
    source.add_argument("--video", type=Path, help="measure a recorded video instead")
    args = parser.parse_args()
    (window if args.window else video if args.video else headless)(args)


if __name__ == "__main__":
    main()
