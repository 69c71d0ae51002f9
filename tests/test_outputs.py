"""Outputs beyond the screen, received by real peers: an NDI receiver on loopback, ffmpeg taking an SRT or UDP
stream, further windows on an X server (screenshot with ffmpeg's x11grab); the headless file's constant rate under
load; failing, stalled and missing outputs never stopping the show; the [[output]] tables' bad values."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from installation.control.config import OscConfig
from installation.control.service import ControlService
from installation.display.config import DisplayConfig
from installation.display.offscreen import Offscreen
from installation.display.sinks import OutputStatus
from installation.engine.config import EngineConfig, RenderConfig, WalkConfig
from installation.live.run import live_show
from installation.live.status import read_status
from installation.models import create_stylegan1, save_gan
from installation.outputs import NdiConfig, StreamConfig
from installation.presets import Preset, PresetError, load_preset

ROOT = Path(__file__).resolve().parents[1]
SIZE = (160, 120)
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), path)
    return path


def still_preset(*outputs, grid: bool = False) -> Preset:
    """A picture that holds still once training is paused: a walk of an hour per loop, cut from frame to frame."""
    return Preset(engine=EngineConfig(device="cpu", threads=1, snapshot_every=1000, probe_every=1000),
                  walk=WalkConfig(keyframes=3, period=3600.0, grid=2),
                  display=DisplayConfig(width=SIZE[0], height=SIZE[1], crossfade=0.0, show_grid=grid),
                  render=RenderConfig(max_fps=10), osc=OscConfig(enabled=False), outputs=outputs)


@contextlib.contextmanager
def show(preset: Preset, checkpoint: Path, run_dir: Path, ctx):
    """The live loop in this process on an offscreen surface, training paused once it runs (the picture still)."""
    surface = Offscreen(*SIZE, ctx=ctx)
    try:
        with live_show(preset, checkpoint, 32, run_dir, surface, ControlService(preset.osc)) as loop:
            tick_until(loop, surface, lambda: loop.supervisor.state.status == "running", "the engine")
            loop.stage.send("pause")
            tick_until(loop, surface, lambda: loop.supervisor.state.status == "paused", "the pause")
            iteration = loop.supervisor.state.iteration  # frames drawn ahead by earlier weights: played out
            tick_until(loop, surface, lambda: loop.picture.shown_iteration == iteration, "the paused weights")
            yield loop, surface
    finally:
        surface.release()


def tick_until(loop, surface, predicate, what: str, timeout: float = 120.0, fps: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; outputs {loop.state.outputs}"
        tick(loop, surface, 1 / fps)


def tick(loop, surface, seconds: float, fps: float = 20.0) -> np.ndarray:
    """Refresh at `fps` for `seconds` (at least once); the last picture presented."""
    end = time.monotonic() + seconds
    while True:
        surface.begin()
        loop.tick()
        picture = surface.read()
        if time.monotonic() >= end:
            return picture
        time.sleep(1 / fps)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def close_enough(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    return a.shape == b.shape and float(np.abs(a.astype(int) - b.astype(int)).mean()) <= tolerance


# ---------------------------------------------------------------------------------------------------------- NDI
@pytest.fixture
def ndi(tmp_path, monkeypatch):
    """NDI in this process, discovery on loopback only (NDI_CONFIG_DIR: no mDNS daemon, no network needed)."""
    ndi = pytest.importorskip("NDIlib", reason="the NDI runtime: pip install 'uncanny[ndi]' (the test extra has it)")
    (tmp_path / "ndi").mkdir()
    (tmp_path / "ndi" / "ndi-config.v1.json").write_text('{"ndi": {"networks": {"ips": "127.0.0.1", "discovery": ""}}}')
    monkeypatch.setenv("NDI_CONFIG_DIR", str(tmp_path / "ndi"))
    return ndi


class NdiReceiver:
    """A real NDI receiver on its own thread: finds the source by name on 127.0.0.1 and keeps what arrives."""

    def __init__(self, ndi, name: str) -> None:
        self.ndi, self.name = ndi, name
        self.frames: list[tuple[float, np.ndarray]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ndi = self.ndi
        assert ndi.initialize()
        settings = ndi.FindCreate()
        settings.extra_ips, settings.show_local_sources = "127.0.0.1", True
        finder = ndi.find_create_v2(settings)
        source = None
        while source is None and not self._stop.is_set():
            ndi.find_wait_for_sources(finder, 200)
            source = next((s for s in ndi.find_get_current_sources(finder) if f"({self.name})" in s.ndi_name), None)
        if source is None:
            return
        receive = ndi.RecvCreateV3()
        receive.color_format = ndi.RECV_COLOR_FORMAT_RGBX_RGBA
        receiver = ndi.recv_create_v3(receive)
        ndi.recv_connect(receiver, source)
        while not self._stop.is_set():
            kind, video, _, _ = ndi.recv_capture_v2(receiver, 100)
            if kind == ndi.FRAME_TYPE_VIDEO:
                self.frames.append((time.monotonic(), video.data[..., :3].copy()))
                ndi.recv_free_video_v2(receiver, video)
        ndi.recv_destroy(receiver)
        ndi.find_destroy(finder)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_ndi_is_received_on_loopback_at_its_size_and_rate_with_the_screens_pixels(ndi, checkpoint, tmp_path,
                                                                                   egl_ctx):
    name = f"uncanny-test-{uuid.uuid4().hex[:8]}"  # a show running on this machine has its own source
    output = NdiConfig(name=name, size="96x72", fps=10.0)
    with show(still_preset(output), checkpoint, tmp_path / "run", egl_ctx) as (loop, surface):
        receiver = NdiReceiver(ndi, name)
        try:
            tick_until(loop, surface, lambda: len(receiver.frames) >= 3, "the first NDI frames")
            first = len(receiver.frames)
            start = time.monotonic()
            screen = tick(loop, surface, 4.0)
            arrived = len(receiver.frames) - first
            seconds = time.monotonic() - start
        finally:
            receiver.close()
        (state,) = [o for o in loop.state.outputs if o.name == f"ndi:{name}"]
    assert state.status is OutputStatus.ON and state.frames > 0
    _, received = receiver.frames[-1]
    assert received.shape == (72, 96, 3)
    # at its own rate, not the loop's (20 Hz): never more than 10 a second; a loaded machine may deliver fewer
    assert 0.4 * 10 * seconds <= arrived <= 10 * seconds + 2, (arrived, seconds)
    # what the screen shows (160x120), fitted into 96x72 (the same shape: no bars): NDI's own compression is lossy
    expected = np.asarray(Image.fromarray(screen).resize((96, 72)))
    assert close_enough(received, expected, 8.0), float(np.abs(received.astype(int) - expected).mean())


def test_a_missing_ndi_runtime_is_one_line_and_the_show_goes_on(checkpoint, tmp_path):
    preset = tmp_path / "ndi.toml"
    preset.write_text('[[output]]\nkind = "ndi"\nname = "nobody"\nsize = "64x48"\n')
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "NDIlib.py").write_text("raise ImportError('no NDI here')\n")  # as if the extra were not installed
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    done = subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "--checkpoint", str(checkpoint),
                           "--preset", str(preset), "--headless", "--seconds", "3", "--size", "96x64", "--device",
                           "cpu", "--no-osc", "--http-port", "0", "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "ndi:nobody" in line]
    assert len(lines) == 1 and "pip install 'uncanny[ndi]'" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert list((tmp_path / "run").glob("live-*.mp4"))
    assert any("ndi:nobody failed" in entry for entry in read_status(tmp_path / "run").outputs)


# ------------------------------------------------------------------------------------------------------ streams
def receive_stream(url: str, frames: int, size: tuple[int, int], timeout: float = 120.0) -> np.ndarray:
    """ffmpeg as the receiver: `frames` decoded frames of the stream at `url`, (N, H, W, 3)."""
    done = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-fflags", "nobuffer", "-i", url,
                           "-frames:v", str(frames), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                          capture_output=True, timeout=timeout)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    width, height = size
    return np.frombuffer(done.stdout, np.uint8).reshape(-1, height, width, 3)


@pytest.mark.parametrize("scheme", ["srt", "udp"])
def test_a_stream_is_received_by_ffmpeg_with_the_screens_picture(scheme, checkpoint, tmp_path, egl_ctx):
    port = free_udp_port()
    url = f"srt://127.0.0.1:{port}?mode=listener" if scheme == "srt" else f"udp://127.0.0.1:{port}"
    receive = f"srt://127.0.0.1:{port}?mode=caller" if scheme == "srt" else f"udp://127.0.0.1:{port}"
    output = StreamConfig(url=url, size="160x120", fps=10.0)
    with show(still_preset(output), checkpoint, tmp_path / "run", egl_ctx) as (loop, surface):
        got: list[np.ndarray] = []
        receiver = threading.Thread(target=lambda: got.append(receive_stream(receive, 5, SIZE)), daemon=True)
        receiver.start()
        seen = set()  # the stream's states while the receiver took its frames
        screens = []  # what the screen showed meanwhile (a receiver that leaves is said on screen afterwards)

        def received() -> bool:
            statuses = {o.status for o in loop.state.outputs if o.name == f"stream:{url}"}
            if OutputStatus.ON in statuses and not screens:
                screens.append(surface.read())
            seen.update(statuses)
            return not receiver.is_alive()

        tick_until(loop, surface, received, "five decoded frames", timeout=180)
    assert got and got[0].shape == (5, SIZE[1], SIZE[0], 3)
    assert OutputStatus.ON in seen
    screen = screens[0]
    assert close_enough(got[0][-1], screen, 10.0), float(np.abs(got[0][-1].astype(int) - screen).mean())


def test_an_srt_receiver_that_leaves_and_comes_back_is_served_again(checkpoint, tmp_path, egl_ctx):
    port = free_udp_port()
    url = f"srt://127.0.0.1:{port}?mode=listener"
    with show(still_preset(StreamConfig(url=url, size="160x120", fps=10.0)), checkpoint, tmp_path / "run",
              egl_ctx) as (loop, surface):
        for _ in range(2):  # ffmpeg exits when its caller leaves; the sender starts a new listener
            got: list[np.ndarray] = []
            receiver = threading.Thread(target=lambda: got.append(receive_stream(
                f"srt://127.0.0.1:{port}?mode=caller", 3, SIZE)), daemon=True)
            receiver.start()
            tick_until(loop, surface, lambda: not receiver.is_alive(), "frames to a new receiver", timeout=180)
            assert got and len(got[0]) == 3


def test_a_busy_port_or_a_stalled_receiver_never_stops_the_screen(checkpoint, tmp_path, egl_ctx, caplog):
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))  # SRT listens on UDP: this port is taken
    taken = f"srt://127.0.0.1:{busy.getsockname()[1]}?mode=listener"
    waiting = f"srt://127.0.0.1:{free_udp_port()}?mode=listener"  # nobody calls: ffmpeg never takes a frame
    preset = still_preset(StreamConfig(url=taken, size="64x48", fps=20.0),
                          StreamConfig(url=waiting, size="64x48", fps=20.0))
    try:
        with show(preset, checkpoint, tmp_path / "run", egl_ctx) as (loop, surface):
            refreshes = loop.refreshes
            tick_until(loop, surface, lambda: {o.name: o for o in loop.state.outputs}[f"stream:{taken}"].status
                       is OutputStatus.RETRYING, "the busy port's failure")
            tick(loop, surface, 3.0)
            outputs = {o.name: o for o in loop.state.outputs}
            assert loop.refreshes - refreshes >= 20  # the loop kept going
    finally:
        busy.close()
    failed = outputs[f"stream:{taken}"]
    assert failed.status is OutputStatus.RETRYING and "ffmpeg exited" in failed.detail
    assert outputs[f"stream:{waiting}"].dropped > 0  # frames the stalled sender could not take: counted
    said = [record.getMessage() for record in caplog.records if taken in record.getMessage()]
    assert len(said) == 1 and "trying again" in said[0]  # said once per outage, not at every retry


# ------------------------------------------------------------------------------------------------ headless file
def test_the_headless_file_lasts_as_long_as_the_run_while_the_cores_are_loaded(checkpoint, tmp_path):
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        run = subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "--checkpoint", str(checkpoint),
                              "--headless", "--seconds", "20", "--size", "160x120", "--device", "cpu", "--no-osc",
                              "--http-port", "0",
                              "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert run.returncode == 0, run.stderr
    (video,) = (tmp_path / "run").glob("live-*.mp4")
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert abs(frames / 30.0 - 20.0) <= 0.03 * 20.0, (frames, seconds, run.stderr)


# ------------------------------------------------------------------------------------------------------ windows
WINDOWS_PRESET = """
[display]
width = 160
height = 120
crossfade = 0.0
[walk]
period = 3600.0
keyframes = 3
grid = 2
[logs]
status_every = 0.2
[[output]]
kind = "window"
fullscreen = false
size = "160x160"
position = "200,0"
view = "grid"
"""


def test_two_windows_show_their_own_views(x_display, checkpoint, tmp_path):
    preset = tmp_path / "windows.toml"
    preset.write_text(WINDOWS_PRESET)
    process = subprocess.Popen([sys.executable, str(ROOT / "run_installation.py"), "--checkpoint", str(checkpoint),
                                "--preset", str(preset), "--windowed", "--device", "cpu", "--no-osc", "--http-port",
                                "0",
                                "--run-dir", str(tmp_path / "run"), "--seconds", "120"],
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "no window output came up"
            try:
                status = read_status(tmp_path / "run")
            except (OSError, ValueError):
                status = None
            if status is not None and status.iteration >= 1 and any(
                    entry.startswith("window:1:grid on") for entry in status.outputs):
                break
            time.sleep(0.2)
        time.sleep(1.0)  # the grid's frames reach the second window
        shot = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "x11grab", "-video_size",
                               "360x160", "-i", f"{x_display}+0,0", "-frames:v", "1", "-f", "rawvideo",
                               "-pix_fmt", "rgb24", "-"], capture_output=True, timeout=60)
        assert shot.returncode == 0, shot.stderr.decode(errors="replace")
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=120)
    assert process.returncode == 0, errors
    screen = np.frombuffer(shot.stdout, np.uint8).reshape(160, 360, 3)
    Image.fromarray(screen).save(tmp_path / "shot.png")  # kept for a person to look at
    main = screen[:120, 20:140]  # the main window at 0,0: one walk, fitted (letterboxed) into 160x120
    cells = screen[:160, 200:360]  # the second window at 200,0: the 2 x 2 grid in 160x160
    quarter = np.asarray(Image.fromarray(np.ascontiguousarray(main)).resize((80, 80)))
    assert main.std() > 10 and cells.std() > 10, "a window is blank"
    # the grid's first cell is the main walk; the others are other walks
    assert close_enough(cells[:80, :80], quarter, 12.0)
    assert not close_enough(cells[:80, 80:], quarter, 12.0)


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("table, message", [
    ('kind = "projector"', r"\[\[output\]\] #1: kind must be one of ndi, stream, window, got 'projector'"),
    ("name = \"x\"", r"\[\[output\]\] #1: kind must be one of"),
    ('kind = "ndi"\nsize = "wide"', r"\[\[output\]\] #1 \(ndi\): size must be \"WIDTHxHEIGHT\""),
    ('kind = "ndi"\nname = ""', r"\[\[output\]\] #1 \(ndi\): name must be 1 to 64 printable characters"),
    ('kind = "ndi"\nfps = 0', r"\[\[output\]\] #1 \(ndi\): fps must be"),
    ('kind = "stream"\nurl = "http://example.com/live"',
     r"\[\[output\]\] #1 \(stream\): url must be \"srt://:PORT\?mode=listener\""),
    ('kind = "stream"\nurl = "udp://:5000"', r"\[\[output\]\] #1 \(stream\): url must be"),
    ('kind = "stream"\nsize = "161x120"', r"\[\[output\]\] #1 \(stream\): size must be even"),
    ('kind = "stream"\nbitrate = 5', r"\[\[output\]\] #1 \(stream\): bitrate must be"),
    ('kind = "window"\nview = "tiles"', r"\[\[output\]\] #1 \(window\): view must be one of walk, grid"),
    ('kind = "window"\nwalk = -1', r"\[\[output\]\] #1 \(window\): walk must be"),
    ('kind = "window"\nposition = "left"', r"\[\[output\]\] #1 \(window\): position must be \"X,Y\""),
    ('kind = "window"\nsize = 3', r"\[\[output\]\] #1 \(window\): size must be a string"),
    ('kind = "ndi"\ncolour = "red"', r"\[\[output\]\] #1 \(ndi\): unknown key 'colour'"),
])
def test_bad_outputs_are_one_line_naming_the_file_and_the_output(tmp_path, table, message):
    path = tmp_path / "bad.toml"
    path.write_text(f"[[output]]\n{table}\n")
    with pytest.raises(PresetError, match=f"^{re.escape(str(path))}: {message}") as error:
        load_preset(path)
    assert "\n" not in str(error.value)


def test_two_outputs_with_one_name_are_refused(tmp_path):
    path = tmp_path / "twice.toml"
    path.write_text('[[output]]\nkind = "ndi"\n[[output]]\nkind = "ndi"\n')
    with pytest.raises(PresetError, match=r"\[\[output\]\] #2 \(ndi\): a second output ndi:uncanny"):
        load_preset(path)
    path.write_text('[output]\nkind = "ndi"\n')
    with pytest.raises(PresetError, match=r"output must be an array of tables, each starting with \[\[output\]\]"):
        load_preset(path)


def test_a_second_window_fills_the_second_monitor_and_a_missing_monitor_is_retried(two_monitors, checkpoint,
                                                                                   tmp_path):
    """Two real monitors (Xvnc: 800x600 at 0,0 and 640x480 at 800,0): the main window full-screen on the first, the
    grid full-screen on the second; a window asked for on a monitor that is not there says so and the show goes on."""
    preset = tmp_path / "projectors.toml"
    preset.write_text(WINDOWS_PRESET.replace('fullscreen = false\nsize = "160x160"\nposition = "200,0"\n',
                                             'monitor = "1"\n')
                      + '[[output]]\nkind = "window"\nmonitor = "5"\nview = "walk"\nwalk = 1\n')
    env = {**os.environ, "DISPLAY": two_monitors}
    process = subprocess.Popen([sys.executable, str(ROOT / "run_installation.py"), "--checkpoint", str(checkpoint),
                                "--preset", str(preset), "--fullscreen", "--monitor", "0", "--device", "cpu",
                                "--no-osc", "--http-port", "0", "--run-dir", str(tmp_path / "run"), "--seconds",
                                "120"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "no window output came up"
            try:
                status = read_status(tmp_path / "run")
            except (OSError, ValueError):
                status = None
            if status is not None and status.iteration >= 1 and "window:1:grid on" in " ".join(status.outputs):
                break
            time.sleep(0.2)
        time.sleep(1.0)
        shot = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "x11grab", "-video_size",
                               "1440x600", "-i", f"{two_monitors}+0,0", "-frames:v", "1", "-f", "rawvideo",
                               "-pix_fmt", "rgb24", "-"], capture_output=True, timeout=60)
        assert shot.returncode == 0, shot.stderr.decode(errors="replace")
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=120)
    assert process.returncode == 0, errors
    screen = np.frombuffer(shot.stdout, np.uint8).reshape(600, 1440, 3)
    Image.fromarray(screen).save(tmp_path / "monitors.png")  # kept for a person to look at
    first, second = screen[:, 100:700], screen[:480, 880:1360]  # each monitor's picture, fitted (letterboxed)
    assert first.std() > 10 and second.std() > 10, "a monitor is blank"
    quarter = np.asarray(Image.fromarray(np.ascontiguousarray(first)).resize((240, 240)))
    assert close_enough(second[:240, :240], quarter, 12.0)  # the grid's first cell is the main walk
    missing = [line for line in errors.splitlines() if "window:5:walk1" in line]
    assert len(missing) == 1 and "monitor 5 is not connected" in missing[0], errors
    assert any(entry.startswith("window:5:walk1 retrying") for entry in read_status(tmp_path / "run").outputs)
