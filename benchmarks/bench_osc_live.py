#!/usr/bin/env python3
"""OSC message -> the first presented frame that shows its effect, on a real running installation.

    python3 benchmarks/bench_osc_live.py                      # the embedded 64 px model, 640x360, 20 + 10 trials
    python3 benchmarks/bench_osc_live.py --checkpoint FILE --size 1920x1080 --trials 50

The installation runs in this process (an EGL framebuffer, its engine process training), its OSC server on a
loopback port; a controller socket sends real datagrams. Measured from the send to the end of the refresh whose
framebuffer shows the effect:
- blackout: `/uncanny/view/blackout 1` until the picture is black (and 0 until it is back): display-side only;
- reset: `/uncanny/reset` while training until the frame on screen was drawn from iteration 0: the command goes
  down the engine's pipe, waits for the step in progress, and the renderer draws a new frame.
Prints median and p95 per kind, with the device.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench_engine import cpu_name  # noqa: E402

from installation.arguments import size_arg  # noqa: E402
from installation.control.packets import build_message  # noqa: E402
from installation.control.service import ControlService  # noqa: E402
from installation.display.offscreen import Offscreen  # noqa: E402
from installation.engine import EngineConfig  # noqa: E402
from installation.live.run import live_show  # noqa: E402
from installation.models import default_checkpoint, load_gan  # noqa: E402
from installation.presets import Preset  # noqa: E402
from installation.control.config import OscConfig  # noqa: E402
from installation.display.config import DisplayConfig  # noqa: E402
from installation.engine.config import RenderConfig  # noqa: E402


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {1000 * statistics.median(ordered):.1f} ms, p95 {1000 * p95:.1f} ms (n={len(ordered)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--size", type=size_arg, default=(640, 360))
    parser.add_argument("--trials", type=int, default=20, help="blackout trials (reset: half as many)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    checkpoint = args.checkpoint or default_checkpoint()
    resolution = load_gan(checkpoint, require_discriminator=True).resolution
    width, height = args.size
    preset = Preset(engine=EngineConfig(device=args.device, snapshot_every=20),
                    display=DisplayConfig(width=width, height=height, crossfade=0.0), render=RenderConfig(),
                    osc=OscConfig(host="127.0.0.1", port=0, state_every=0.0))
    surface = Offscreen(width, height)
    ctx = surface.ctx
    control = ControlService(preset.osc)
    control.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    with tempfile.TemporaryDirectory() as tmp:
        show = live_show(preset, checkpoint, resolution, Path(tmp) / "run", surface, control)
        loop = show.__enter__()

        def refresh() -> bytes:
            surface.begin()
            loop.tick()
            return surface.read()

        def until(predicate, timeout: float = 120.0) -> float:
            start = time.perf_counter()
            while not predicate() and time.perf_counter() - start < timeout:
                pass
            return time.perf_counter() - start

        def send(address: str, *values) -> float:
            sent = time.perf_counter()
            sock.sendto(build_message(address, *values), control.osc.address)
            return sent

        try:
            until(lambda: refresh() is not None and loop.supervisor.state.iteration >= 3)
            blackout, back, reset = [], [], []
            for _ in range(args.trials):
                sent = send("/uncanny/view/blackout", 1.0)
                until(lambda: refresh().max() == 0)
                blackout.append(time.perf_counter() - sent)
                sent = send("/uncanny/view/blackout", 0.0)
                until(lambda: refresh().max() > 0)
                back.append(time.perf_counter() - sent)
            for _ in range(max(1, args.trials // 2)):
                until(lambda: refresh() is not None and loop.picture.shown_iteration >= 3)
                sent = send("/uncanny/reset")
                until(lambda: refresh() is not None and loop.picture.shown_iteration == 0)
                reset.append(time.perf_counter() - sent)
            steps = loop.supervisor.state.steps_per_second
        finally:
            show.__exit__(None, None, None)
            control.stop()
            surface.release()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_name()
    print(f"device: {device}; display {ctx.info['GL_RENDERER']}; {checkpoint.name} at {resolution} px, "
          f"screen {width}x{height}, training at {steps:.2f} steps/s")
    print(f"blackout 1 -> black frame presented: {percentiles(blackout)}")
    print(f"blackout 0 -> picture presented:     {percentiles(back)}")
    print(f"reset -> frame of iteration 0 shown:  {percentiles(reset)}")


if __name__ == "__main__":
    main()
