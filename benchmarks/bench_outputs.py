"""What each output costs the presented frame rate, and how late a stream's frames arrive.

1. Cost: the installation (the embedded model training in its engine process) presents 1920x1080 as fast as it can
   on an offscreen surface, in blocks with no output, an NDI output and an SRT/UDP stream output (both 1920x1080 at
   30 fps, received on loopback by a real receiver), interleaved round by round; with a display ($DISPLAY, e.g.
   Xvfb), also one window against two windows (the second showing the grid). Reported: presented fps (median of the
   blocks) and the ratio to no output.
2. Latency: frame drawn -> frame decoded. The loop switches the blackout on or off at once (the picture turns black
   or comes back) and the receiver (ffmpeg decoding the UDP stream; the NDI receiver) notes when the first frame of
   the new state arrives. Median and p95 over `--trials` switches.

    python3 benchmarks/bench_outputs.py [--rounds 3 --seconds 5 --trials 20 --size 1920x1080]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import installation  # noqa: E402,F401  # first: its thread policy and triton go before torch and GL
import imageio_ffmpeg  # noqa: E402
import numpy as np  # noqa: E402

from bench_engine import cpu_name  # noqa: E402
from installation.arguments import size_arg  # noqa: E402
from installation.control.config import OscConfig  # noqa: E402
from installation.control.service import ControlService  # noqa: E402
from installation.display.config import DisplayConfig  # noqa: E402
from installation.display.offscreen import Offscreen  # noqa: E402
from installation.display.sinks import SinkContext  # noqa: E402
from installation.live.run import live_show  # noqa: E402
from installation.models import default_checkpoint, load_gan  # noqa: E402
from installation.outputs import NdiConfig, NdiSender, StreamConfig, StreamSender, WindowConfig  # noqa: E402
from installation.presets import Preset  # noqa: E402


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StreamReceiver:
    """ffmpeg decoding a UDP stream on loopback; `frames` holds (arrival, mean brightness) of each decoded frame."""

    def __init__(self, port: int, size: tuple[int, int]) -> None:
        self.size, self.frames = size, []
        self.process = subprocess.Popen(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-fflags", "nobuffer", "-flags",
             "low_delay", "-i", f"udp://127.0.0.1:{port}", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
            stdout=subprocess.PIPE)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        width, height = self.size
        while chunk := self.process.stdout.read(width * height):
            if len(chunk) == width * height:
                self.frames.append((time.monotonic(), float(np.frombuffer(chunk, np.uint8).mean())))

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


class NdiReceiver:
    """An NDI receiver on loopback (NDI_CONFIG_DIR set by the caller); `frames` as StreamReceiver's."""

    def __init__(self, name: str) -> None:
        import NDIlib as ndi

        self.ndi, self.name, self.frames = ndi, name, []
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        ndi = self.ndi
        ndi.initialize()
        settings = ndi.FindCreate()
        settings.extra_ips, settings.show_local_sources = "127.0.0.1", True
        finder = ndi.find_create_v2(settings)
        source = None
        while source is None and not self._stop.is_set():
            ndi.find_wait_for_sources(finder, 200)
            source = next((s for s in ndi.find_get_current_sources(finder) if f"({self.name})" in s.ndi_name), None)
        receive = ndi.RecvCreateV3()
        receive.color_format = ndi.RECV_COLOR_FORMAT_RGBX_RGBA
        receiver = ndi.recv_create_v3(receive)
        ndi.recv_connect(receiver, source)
        while not self._stop.is_set():
            kind, video, _, _ = ndi.recv_capture_v2(receiver, 50)
            if kind == ndi.FRAME_TYPE_VIDEO:
                self.frames.append((time.monotonic(), float(video.data[..., :3].mean())))
                ndi.recv_free_video_v2(receiver, video)

    def close(self) -> None:
        self._stop.set()


def presented_fps(loop, surface, seconds: float) -> float:
    start, count = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        surface.begin()
        loop.tick()
        surface.ctx.finish()  # a refresh counts once it is drawn
        count += 1
    return count / (time.monotonic() - start)


def latency(loop, surface, receiver, trials: int) -> list[float]:
    """Seconds from the refresh that switched the blackout to the first frame of that state at the receiver."""
    found = []
    for trial in range(trials):
        black = trial % 2 == 0
        for _ in range(10):  # settle: the receiver shows the state before
            surface.begin()
            loop.tick()
            time.sleep(1 / 30)
        seen = len(receiver.frames)
        loop.stage.set_blackout(1.0 if black else 0.0, 0.0)
        switched = time.monotonic()
        deadline = switched + 10.0
        while time.monotonic() < deadline:
            surface.begin()
            loop.tick()
            arrived = [t for t, level in receiver.frames[seen:] if (level < 2.0) == black]
            if arrived:
                found.append(arrived[0] - switched)
                break
            time.sleep(1 / 120)
    return found


def figures(values: list[float]) -> str:
    if not values:
        return "no frames arrived"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(values) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=size_arg, default=(1920, 1080))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per block")
    parser.add_argument("--trials", type=int, default=20, help="blackout switches per latency figure")
    args = parser.parse_args()
    width, height = args.size
    checkpoint = default_checkpoint()
    resolution = load_gan(checkpoint, require_discriminator=True).resolution
    preset = Preset(display=DisplayConfig(width=width, height=height), osc=OscConfig(enabled=False))
    with tempfile.TemporaryDirectory() as tmp:
        ndi_dir = Path(tmp) / "ndi"
        ndi_dir.mkdir()
        (ndi_dir / "ndi-config.v1.json").write_text('{"ndi": {"networks": {"ips": "127.0.0.1", "discovery": ""}}}')
        os.environ["NDI_CONFIG_DIR"] = str(ndi_dir)  # discovery on loopback, no mDNS daemon needed
        surface = Offscreen(width, height)
        print(f"device: {cpu_name()}, display {surface.ctx.info['GL_RENDERER']}; the embedded {resolution} px model "
              f"training; {width}x{height}; {args.rounds} rounds of {args.seconds:g} s blocks")
        with surface, live_show(preset, checkpoint, resolution, Path(tmp) / "run", surface,
                                ControlService(preset.osc)) as loop:
            while loop.supervisor.state.status != "running":
                presented_fps(loop, surface, 0.2)
            context = SinkContext(surface.ctx, print, False, (0.0, 0.0, 0.0))
            port = free_udp_port()
            size = f"{width}x{height}"
            senders = {"ndi": NdiSender(NdiConfig(name="bench-outputs", size=size), context),
                       "stream": StreamSender(StreamConfig(url=f"udp://127.0.0.1:{port}", size=size), context)}
            receivers = {"ndi": NdiReceiver("bench-outputs"), "stream": StreamReceiver(port, (width, height))}
            base = list(loop.outputs.sinks)
            results: dict[str, list[float]] = {"none": [], "ndi": [], "stream": []}
            try:
                presented_fps(loop, surface, args.seconds)  # warm-up
                for _ in range(args.rounds):
                    for mode in results:
                        loop.outputs.sinks[:] = base + ([senders[mode]] if mode in senders else [])
                        results[mode].append(presented_fps(loop, surface, args.seconds))
                none = statistics.median(results["none"])
                for mode, values in results.items():
                    fps = statistics.median(values)
                    print(f"  {mode:6s}: {fps:5.1f} fps presented ({fps / none:.2f}x of no output)")
                for mode in senders:
                    loop.outputs.sinks[:] = base + [senders[mode]]
                    print(f"  latency, frame drawn -> decoded, {mode}: "
                          f"{figures(latency(loop, surface, receivers[mode], args.trials))}")
            finally:
                loop.outputs.sinks[:] = base
                for closing in (*senders.values(), *receivers.values()):
                    with contextlib.suppress(Exception):
                        closing.close()
    if os.environ.get("DISPLAY"):
        windows(args, checkpoint, resolution)


def windows(args: argparse.Namespace, checkpoint: Path, resolution: int) -> None:
    """One window against two (the second showing the grid), interleaved, on the X display."""
    from installation.display.window import Window
    from installation.outputs import WindowOutput

    width, height = args.size
    preset = Preset(display=DisplayConfig(width=width, height=height, fullscreen=False), osc=OscConfig(enabled=False))
    with tempfile.TemporaryDirectory() as tmp, Window(width, height, vsync=False) as window, \
            live_show(preset, checkpoint, resolution, Path(tmp) / "run", window, ControlService(preset.osc)) as loop:
        while loop.supervisor.state.status != "running":
            presented_fps(loop, window, 0.2)
        second = WindowOutput(WindowConfig(fullscreen=False, size=f"{width}x{height}", view="grid"),
                              SinkContext(window.ctx, print, False, (0.0, 0.0, 0.0)))
        base = list(loop.outputs.sinks)
        results: dict[str, list[float]] = {"one window": [], "two windows": []}
        try:
            for _ in range(args.rounds):
                for mode in results:
                    loop.outputs.sinks[:] = base + ([second] if mode == "two windows" else [])
                    results[mode].append(presented_fps(loop, window, args.seconds))
        finally:
            loop.outputs.sinks[:] = base
            second.close()
    one = statistics.median(results["one window"])
    for mode, values in results.items():
        fps = statistics.median(values)
        print(f"  {mode}: {fps:5.1f} fps presented ({fps / one:.2f}x of one window), vsync off")


if __name__ == "__main__":
    main()
