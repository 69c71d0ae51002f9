"""Live recording of the presented picture: what goes into the file (the picture, not the HUD or the red dot), the
file's clock (frames repeated and dropped), and real headless runs of run_installation.py driven over real OSC,
with the engine killed under a recording and the whole process tree killed with SIGKILL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from installation.display.offscreen import Offscreen
from installation.display.presenter import Presenter
from installation.presets import PresetError, Preset
from installation.recording.config import RecordConfig
from installation.recording.live import LiveRecorder

sys.path.insert(0, str(Path(__file__).parent))
from osc_client import Client  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FPS = 30.0
SIZE = (160, 120)


def decode(path: Path) -> np.ndarray:
    """Every frame, decoded (a file that does not play raises or yields none)."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader])


# ------------------------------------------------------------------------------------------ in one process
@pytest.fixture
def screen(egl_ctx):
    """A presenter on an offscreen target showing a grey picture, the HUD and the recording dot."""
    surface = Offscreen(*SIZE, ctx=egl_ctx)
    presenter = Presenter(egl_ctx, *SIZE, crossfade=0.0)
    presenter.set_frame(np.full((120, 120, 3), 128, np.uint8), 0.0)
    presenter.set_hud("HUD TEXT HUD TEXT")
    presenter.recording_dot = True
    yield surface, presenter
    presenter.release()
    surface.release()


def corner(frame: np.ndarray) -> np.ndarray:
    """Where the red dot sits: the top right corner (in the letterbox bar of a square picture)."""
    return frame[4:16, -16:-4].astype(int)


def is_red(pixels: np.ndarray) -> bool:
    return bool((pixels[..., 0] > 150).any() and (pixels[..., 1] < 60).any())


@pytest.mark.parametrize("hud", [False, True])
def test_the_file_holds_the_picture_without_the_dot_and_the_hud_only_when_asked(screen, tmp_path, hud):
    surface, presenter = screen
    recorder = LiveRecorder(RecordConfig(fps=FPS, hud=hud), tmp_path, surface.ctx, say=lambda text: None)
    start = time.monotonic()
    assert recorder.start(None, 7, SIZE, now=start)
    for k in range(3):
        surface.use()
        captures = [c for c in [recorder.capture_for(start + k / FPS, SIZE)] if c]
        presenter.render(start + k / FPS, *(([], captures) if hud else (captures, [])))
    screen_pixels = surface.read()
    files = recorder.stop()
    assert len(files) == 1 and files[0].parent == tmp_path / "recordings"
    assert re.fullmatch(r"recording-it7-h264-\d{8}-\d{6}\.mp4", files[0].name)
    frames = decode(files[0])
    assert frames.shape == (3, SIZE[1], SIZE[0], 3)
    assert is_red(corner(screen_pixels)) and not is_red(corner(frames[-1]))  # the dot on screen only
    assert abs(frames[-1][60, 80].astype(int) - 128).max() <= 6  # the picture
    hud_box = (slice(4, 20), slice(4, 60))  # the HUD's text over the picture and the left bar
    screen_text = screen_pixels[hud_box].max()
    assert screen_text > 200
    assert (frames[-1][hud_box].max() > 160) == hud  # decoded H.264 blurs the text a little


def test_the_file_clock_repeats_late_refreshes_and_gives_up_a_long_stall(screen, tmp_path):
    surface, presenter = screen
    lines: list[str] = []
    recorder = LiveRecorder(RecordConfig(fps=FPS), tmp_path, surface.ctx, say=lines.append)
    start = time.monotonic()
    assert recorder.start("h264", 0, SIZE, now=start)

    def refresh(at: float) -> bool:
        capture = recorder.capture_for(start + at, SIZE)
        surface.use()
        presenter.render(start + at, [capture] if capture else [])
        return capture is not None

    assert refresh(0.0)  # slot 0
    assert not refresh(0.01)  # a refresh between two of the file's frames: nothing due
    assert refresh(0.2)  # late: slots 1..6, the picture written 6 times
    assert recorder.counts.repeated == 5 and recorder.counts.dropped == 0
    time.sleep(0.5)  # let the encoder take them
    assert refresh(12.2)  # a 12 s stall: 360 slots due, 10 s of them filled at the most, the rest given up
    assert recorder.counts.dropped >= 60
    files = recorder.stop()
    frames = len(decode(files[0]))
    assert frames == recorder.counts.frames and 7 < frames <= 7 + 300
    assert "repeated" in lines[-1] and "dropped" in lines[-1]


def test_a_chosen_size_is_the_picture_fitted_into_it(screen, tmp_path):
    surface, presenter = screen
    recorder = LiveRecorder(RecordConfig(size="64x64"), tmp_path, surface.ctx, say=lambda text: None)
    start = time.monotonic()
    assert recorder.start(None, 0, SIZE, now=start)
    surface.use()
    presenter.set_hud(None)
    presenter.render(start, [c for c in [recorder.capture_for(start, SIZE)] if c])
    frame = decode(recorder.stop()[0])[0]
    assert frame.shape == (64, 64, 3)
    # 160x120 fitted into 64x64: 64x48 of picture (grey over most of it), bars above and below
    assert abs(frame[32, 32].astype(int) - 128).max() <= 6 and frame[2, 32].max() < 30


def test_the_disk_guard_stops_a_recording_cleanly_and_tells_its_starter(screen, small_disk, tmp_path):
    from installation.storage import RECORDING_FREE_BYTES

    surface, presenter = screen
    disk = small_disk(f"{(RECORDING_FREE_BYTES + 2**20) // 2**10}k")  # 1 MiB above the guard's line
    lines: list[str] = []
    told: list[str] = []
    recorder = LiveRecorder(RecordConfig(folder=str(disk)), tmp_path, surface.ctx, say=lines.append)
    assert recorder.folder == disk
    rng = np.random.default_rng(0)
    start = time.monotonic()
    assert recorder.start(None, 3, SIZE, failed=told.append, now=start)
    while recorder.recording:  # noise: about a megabyte a second even at this size
        assert time.monotonic() - start < 60, lines
        presenter.set_frame(rng.integers(0, 256, (120, 120, 3), np.uint8), 0.0)
        surface.use()
        now = time.monotonic()
        presenter.render(now, [c for c in [recorder.capture_for(now, SIZE)] if c])
    assert len(told) == 1 and told[0].startswith("recording stopped (") and "free" in told[0], told
    assert "\n" not in told[0] and lines[-1] == told[0]
    (path,) = recorder.files
    assert path.parent == disk and len(decode(path)) == recorder.counts.frames > 0
    assert not list(disk.glob("*.partial"))


@pytest.mark.parametrize("table, fix", [({"codec": "mpeg1"}, "codec must be one of h264"),
                                        ({"size": "100"}, "WIDTHxHEIGHT"),
                                        ({"quality": 99}, "quality"), ({"fps": 0.5}, "fps")])
def test_record_table_rejects_bad_values_in_one_line(tmp_path, table, fix):
    from installation.presets import load_preset

    lines = "\n".join(f"{key} = {value!r}".replace("'", '"') for key, value in table.items())
    path = tmp_path / "bad.toml"
    path.write_text(f"[record]\n{lines}\n")
    with pytest.raises(PresetError, match=fix) as error:
        load_preset(path)
    assert "\n" not in str(error.value) and "[record]" in str(error.value)
    assert Preset().record == RecordConfig()


# ------------------------------------------------------------------------------------------ real runs
class Headless:
    """run_installation.py --headless (or `mode` --windowed; the embedded model) in a session of its own, its OSC
    port read from its start-up lines, a controller talking to it over UDP."""

    def __init__(self, run_dir: Path, mode: str = "--headless") -> None:
        self.run_dir = run_dir
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "run_installation.py"), mode, "--size", f"{SIZE[0]}x{SIZE[1]}",
             "--device", "cpu", "--run-dir", str(run_dir), "--osc-port", "0", "--http-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
        self.lines: list[str] = []
        port = None
        for line in self.process.stderr:
            self.lines.append(line)
            if found := re.search(r"OSC on udp [\d.]+:(\d+)", line):
                port = int(found[1])
                break
        assert port is not None, "".join(self.lines)
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True)
        self._reader.start()
        self.client = Client(("127.0.0.1", port))
        self.client.sync()

    def record(self, *args: str) -> tuple[tuple[float, float], str]:
        """Start a recording; (when the controller asked and when it heard the recording began, its path)."""
        self.client.backlog.clear()  # the state broadcasts of the recording before
        asked = time.monotonic()
        self.client.send("/uncanny/record/start", *args)
        self.client.expect("/uncanny/state/recording", lambda a: a == [1])
        heard = time.monotonic()
        path = self.client.expect("/uncanny/state/recording_path", lambda a: a != [""])[0]
        return (asked, heard), path

    def stop_recording(self) -> tuple[float, float]:
        """Stop the recording; when the controller asked and when it heard it stopped."""
        self.client.backlog.clear()
        asked = time.monotonic()
        self.client.send("/uncanny/record/stop")
        self.client.expect("/uncanny/state/recording", lambda a: a == [0])
        return asked, time.monotonic()

    def engine_pid(self) -> int:
        """The engine child: multiprocessing's spawned child (not its resource tracker, not a loop export)."""
        pythons = [pid for pid, _ in descendants(self.process.pid)
                   if b"spawn_main" in (command := Path(f"/proc/{pid}/cmdline").read_bytes())
                   and b"resource_tracker" not in command]
        assert len(pythons) == 1, descendants(self.process.pid)
        return pythons[0]

    def stop(self) -> str:
        os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(90)
        self._reader.join(10)
        self.client.close()
        return "".join(self.lines)


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every process below `pid` (children first), as (pid, name), from /proc."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, fields = text.split("(", 1)[1].rsplit(")", 1)[0], text.rsplit(")", 1)[1].split()
        parents.setdefault(int(fields[1]), []).append((int(stat.parent.name), name))
    found, stack = [], [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child[0])
    return found


def assert_frames_match(path: Path, began: tuple[float, float], ended: tuple[float, float],
                        live: Headless) -> np.ndarray:
    """The file holds its duration x fps frames. The controller cannot see when the recording really began and
    ended, only that each came between its message and the state saying so (later on a loaded machine): so the
    duration lies between `ended` asked - `began` heard and `ended` heard - `began` asked."""
    frames = decode(path)
    shortest, longest = ended[0] - began[1], ended[1] - began[0]
    slack = 0.02 * longest * FPS + 1
    assert shortest * FPS - slack <= len(frames) <= longest * FPS + slack, (
        len(frames), shortest * FPS, longest * FPS, "".join(live.lines[-5:]))
    assert frames.shape[1:] == (SIZE[1], SIZE[0], 3) and frames[-1].max() > 40  # a picture, not black
    return frames


def test_recording_over_osc_survives_an_engine_kill_and_a_kill_of_everything(tmp_path):
    run_dir = tmp_path / "run"
    live = Headless(run_dir)
    try:
        # started and stopped over OSC: finalised at once, frames = its duration x fps
        began, path = live.record()
        time.sleep(3.0)
        first = Path(path)
        assert_frames_match(first, began, live.stop_recording(), live)
        assert first.is_file() and not first.with_name(first.name + ".partial").exists()

        # a loop export of the snapshot at iteration 0, in its own process while the show (and its recordings)
        # go on; one at a time (asked once the snapshot exists, as a performer sees it in /uncanny/snapshots)
        deadline = time.monotonic() + 180
        while True:
            live.client.send("/uncanny/snapshots")
            if 0 in live.client.expect("/uncanny/snapshots"):
                break
            assert time.monotonic() < deadline, "the engine never took its snapshot of iteration 0"
            time.sleep(0.5)
        live.client.backlog.clear()
        live.client.send("/uncanny/record/loop", 0, 1.0)
        live.client.send("/uncanny/record/loop", 0, 2.0)
        assert "a loop export is still running" in live.client.expect("/uncanny/error")[0]

        # the engine killed mid-recording: the picture stays up, so the recording goes on without a gap
        began, path = live.record("h264")
        time.sleep(1.0)
        os.kill(live.engine_pid(), signal.SIGKILL)
        time.sleep(3.5)  # the supervisor restarts it after 2 s
        assert_frames_match(Path(path), began, live.stop_recording(), live)
        assert live.process.poll() is None

        export = Path(live.client.expect("/uncanny/state/export", lambda a: a != [""], wait=120)[0])
        assert re.fullmatch(r"loop-it0-1s-h264-\d{8}-\d{6}\.mp4", export.name), export
        assert export.parent == run_dir / "recordings" and len(decode(export)) == FPS  # 1 s at [record] fps

        # the whole tree (the installation, its engine, every ffmpeg) killed: the file plays up to near its end
        began, path = live.record()
        time.sleep(3.0)
        killed_at = time.monotonic()
        tree = [live.process.pid] + [pid for pid, _ in descendants(live.process.pid)]
        for pid in tree:
            os.kill(pid, signal.SIGKILL)
        live.process.wait(30)
    finally:
        if live.process.poll() is None:
            live.stop()
    partial = Path(path + ".partial")
    assert partial.exists() and not Path(path).exists()  # nothing under the real name until it is playable
    frames = len(decode(partial))
    assert (killed_at - began[1] - 2.0) * FPS <= frames <= (killed_at - began[0] + 0.5) * FPS, frames

    # the next start gives the cut-off file its playable name and says so; a SIGTERM finalises a running recording
    again = Headless(run_dir)
    began, path = again.record()
    time.sleep(2.0)
    stopped = time.monotonic()
    log = again.stop()
    assert f"recording cut off by a kill kept as {partial.with_suffix('')}" in log
    assert len(decode(partial.with_suffix(""))) == frames and not partial.exists()
    assert "Traceback" not in log and again.process.returncode == 0
    assert not list(run_dir.glob("recordings/*.partial"))
    assert f"{path} (" in log.splitlines()[-1]  # listed with what the run wrote
    assert len(decode(Path(path))) >= (stopped - began[1] - 0.5) * FPS


def test_a_window_records_its_picture_without_the_dot(x_display, tmp_path):
    live = Headless(tmp_path / "run", "--windowed")
    try:
        began, path = live.record()
        time.sleep(3.0)  # long enough that one refresh of latency at start or stop stays within 2 %
        frames = assert_frames_match(Path(path), began, live.stop_recording(), live)
    finally:
        log = live.stop()
    assert live.process.returncode == 0 and "Traceback" not in log, log
    assert not is_red(corner(frames[-1]))
