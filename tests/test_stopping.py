"""Stopping and surviving, as a gallery does it: signals to the main process and to its whole group, ffmpeg killed,
a second instance, a full disk, run folders that cannot be one. Real runs of run_installation.py, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from installation.engine import Engine, EngineConfig
from installation.models import create_stylegan1, load_gan, save_gan

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(ROOT / "run_installation.py")]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), path)
    return path


def start(checkpoint: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    """The installation in a process group of its own (as a terminal or systemd would start it)."""
    return subprocess.Popen([*RUN, "--checkpoint", str(checkpoint), "--size", "160x120", "--device", "cpu",
                             "--run-dir", str(run_dir), "--osc-port", "0", "--http-port", "0", *extra],
                             stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def wait_until(predicate, process: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"the installation exited early: {process.communicate()[1]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def recording(run_dir: Path) -> bool:
    return any(p.stat().st_size > 20_000 for p in run_dir.glob("live-*.mp4.partial"))


def decoded_frames(path: Path) -> int:
    """Decode every frame (not just count packets): an unplayable file raises or yields none."""
    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)  # the metadata
    return sum(1 for _ in reader)


def children(pid: int) -> list[tuple[int, str]]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append((int(stat.parent.name), name))
    return found


def segments(pid: int) -> list[str]:
    return [p.name for p in Path("/dev/shm").glob(f"uncanny-{pid}-*")]


def stop_with(process: subprocess.Popen, sig: signal.Signals, group: bool) -> tuple[int, str]:
    (os.killpg if group else os.kill)(process.pid, sig)
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def assert_clean_end(run_dir: Path, pid: int, code: int, stderr: str, signal_name: str) -> tuple[Path, Path]:
    assert code == 0, stderr
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr
    ends = [line for line in stderr.splitlines() if line.startswith(f"uncanny: stopped ({signal_name})")]
    assert len(ends) == 1 and "final snapshot at iteration" in ends[0], stderr
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    final = events[-1]["iteration"]
    assert events[-1]["event"] == "stop", events[-3:]
    # the final snapshot: taken at the stop, or already by the step that reached that iteration
    assert any(e["event"] == "snapshot" and e["iteration"] == final for e in events), events[-4:]
    assert (run_dir / "snapshots" / f"it{final:08d}.pt").exists()
    assert not segments(pid), "shared memory left behind"
    assert not list(run_dir.glob("*.partial"))
    video, picture = ends[0].split("wrote ")[1].split(", ")[0].split(" (")[0], ends[0].rsplit(", ", 1)[1]
    assert decoded_frames(Path(video)) >= 15
    assert Path(picture).stat().st_size > 0
    return Path(video), Path(picture)


def test_every_stop_signal_ends_a_headless_run_cleanly_and_nothing_is_overwritten(tiny_checkpoint, tmp_path):
    run_dir = tmp_path / "run"
    written: dict[Path, bytes] = {}
    for sig, group in [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGTERM, True),
                       (signal.SIGHUP, True)]:
        process = start(tiny_checkpoint, run_dir, "--headless")
        before = steps(run_dir)
        wait_until(lambda: steps(run_dir) > before + 2 and recording(run_dir), process)
        code, stderr = stop_with(process, sig, group)
        video, picture = assert_clean_end(run_dir, process.pid, code, stderr, sig.name)
        assert video not in written and picture not in written
        for path, content in written.items():
            assert path.read_bytes() == content, f"{path} was changed by a later run"
        written.update({video: video.read_bytes(), picture: picture.read_bytes()})
    events = [json.loads(line)["event"] for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events.count("resume") == 3 and "died" not in events  # each run stopped cleanly and the next resumed


@pytest.mark.parametrize("sig, group", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_a_window_run_stops_cleanly_on_a_signal(x_display, tiny_checkpoint, tmp_path, sig, group):
    run_dir = tmp_path / "run"
    process = start(tiny_checkpoint, run_dir, "--windowed")
    wait_until(lambda: steps(run_dir) > 2, process)
    code, stderr = stop_with(process, sig, group)
    assert code == 0 and "Traceback" not in stderr, stderr
    assert f"uncanny: stopped ({sig.name}); final snapshot at iteration" in stderr
    pictures = list(run_dir.glob("last_frame-*.png"))
    assert len(pictures) == 1 and pictures[0].stat().st_size > 0
    assert not segments(process.pid)


def test_a_killed_ffmpeg_is_replaced_and_a_second_instance_is_refused_without_touching_anything(
        tiny_checkpoint, tmp_path):
    run_dir = tmp_path / "run"
    process = start(tiny_checkpoint, run_dir, "--headless")
    wait_until(lambda: recording(run_dir) and steps(run_dir) > 2, process)

    listing = sorted((p.name, p.stat().st_size) for p in run_dir.iterdir() if p.suffix in (".mp4", ".partial"))
    second = subprocess.run([*RUN, "--checkpoint", str(tiny_checkpoint), "--headless", "--seconds", "5",
                             "--device", "cpu", "--run-dir", str(run_dir), "--osc-port", "0", "--http-port", "0"],
                             capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 75 and "Traceback" not in second.stderr  # held for now: the service retries
    errors = [line for line in second.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "another installation or journey is running on it" in errors[0], second.stderr
    assert not [n for n, _ in listing if n not in {p.name for p in run_dir.iterdir()}]  # nothing removed
    assert not [p for p in run_dir.glob("live-*") if p.name not in {n for n, _ in listing}]  # nothing added

    ffmpeg = [pid for pid, name in children(process.pid) if name.startswith("ffmpeg")]
    assert len(ffmpeg) == 1
    os.kill(ffmpeg[0], signal.SIGKILL)
    # the cut-off file under its own name at once (it plays up to the kill), the new one still a .partial
    wait_until(lambda: len(list(run_dir.glob("live-*.mp4"))) == 1
               and len([p for p in run_dir.glob("live-*.mp4.partial") if p.stat().st_size > 0]) == 1, process)
    time.sleep(2)
    code, stderr = stop_with(process, signal.SIGTERM, group=True)
    assert code == 0, stderr
    assert "video output failed (ffmpeg was killed (signal 9))" in stderr and "a new file starts in" in stderr
    videos = sorted(run_dir.glob("live-*.mp4"))
    assert len(videos) == 2, videos
    assert all(decoded_frames(v) > 0 for v in videos)  # the cut-off one plays up to the kill, the new one whole


def test_after_a_sigkill_of_the_whole_tree_the_next_start_keeps_the_recording_and_frees_shared_memory(
        tiny_checkpoint, tmp_path):
    run_dir = tmp_path / "run"
    process = start(tiny_checkpoint, run_dir, "--headless")
    wait_until(lambda: recording(run_dir) and steps(run_dir) > 2, process)
    time.sleep(1.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    time.sleep(0.5)  # the group's other members die too
    assert segments(process.pid), "expected the killed run's frame channel in /dev/shm"
    (partial,) = run_dir.glob("live-*.mp4.partial")
    assert decoded_frames(partial) >= 15  # fragmented: it plays up to about its last second

    again = subprocess.run([*RUN, "--checkpoint", str(tiny_checkpoint), "--headless", "--seconds", "3",
                            "--size", "160x120", "--device", "cpu", "--run-dir", str(run_dir), "--no-osc",
                            "--http-port", "0"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    recovered = partial.with_name(partial.name.removesuffix(".partial"))
    assert f"{recovered}: a recording cut off by a kill, kept under this playable name" in again.stderr
    assert decoded_frames(recovered) >= 15 and not segments(process.pid)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("died") == 1  # the killed session is on record


@pytest.mark.parametrize("run_dir, message", [
    ("{tmp}/a-file", "cannot be used (File exists)"),
    ("{tmp}/a-file/below", "cannot be used (Not a directory)"),
    ("/proc/uncanny-run", "cannot be used"),
])
def test_a_run_folder_that_cannot_be_one_is_one_line(tiny_checkpoint, tmp_path, cli, run_dir, message):
    """In this process (the next test goes through a real one)."""
    (tmp_path / "a-file").write_text("not a folder")
    code, stderr = cli("--checkpoint", tiny_checkpoint, "--headless", "--seconds", "1", "--device", "cpu",
                       "--run-dir", run_dir.format(tmp=tmp_path), "--no-osc", "--http-port", "0")
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1 and message in errors[0], stderr


def test_a_run_folder_of_another_model_is_refused_at_start_without_touching_it(tiny_checkpoint, tmp_path):
    other = tmp_path / "other.pt"
    save_gan(create_stylegan1([32, 32, 16], code_dim=32, n_mlp=2, seed=1), other)
    run_dir = tmp_path / "run"
    Engine(load_gan(tiny_checkpoint), EngineConfig(device="cpu"), run_dir).close()  # a run of the tiny model
    contents = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    result = subprocess.run([*RUN, "--checkpoint", str(other), "--headless", "--seconds", "3", "--device", "cpu",
                             "--run-dir", str(run_dir), "--no-osc", "--http-port", "0"], capture_output=True,
                             text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "belongs to another model" in errors[0], result.stderr
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == contents


def test_a_busy_osc_port_exits_75_for_the_service_to_try_again(tiny_checkpoint, tmp_path):
    """Another program holds the port (at boot, for a moment): not bad input, so not exit 2, which the service never
    relaunches, but 75, which it does."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("0.0.0.0", 0))
    with holder:
        port = holder.getsockname()[1]
        result = subprocess.run([*RUN, "--checkpoint", str(tiny_checkpoint), "--headless", "--seconds", "3",
                                 "--device", "cpu", "--run-dir", str(tmp_path / "run"), "--osc-port", str(port),
                                 "--http-port", "0"],
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 75 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and f"cannot listen for OSC on 0.0.0.0:{port} (Address already in use)" in errors[0]


def test_a_full_disk_stops_the_video_with_one_line_a_playable_file_and_the_show_going_on(tiny_checkpoint,
                                                                                         small_disk):
    disk = small_disk("68m")
    (disk / "filler").write_bytes(np.random.default_rng(0).bytes(3 * 2**20))  # 65 MB free: just above the video's
    # guard, which stops it at 64 MB free, while the run's own files go on to 32 MB
    run_dir = disk / "run"
    process = start(tiny_checkpoint, run_dir, "--headless", "--size", "640x480")
    try:
        # the guard finalises the video before the disk is full; the installation goes on without one
        wait_until(lambda: any(p.stat().st_size for p in run_dir.glob("live-*.mp4"))
                   and not list(run_dir.glob("*.partial")), process, 180)
        held = steps(run_dir)
        wait_until(lambda: steps(run_dir) > held, process)  # still training, still presenting
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)  # not left holding the small disk
        raise
    code, stderr = stop_with(process, signal.SIGTERM, group=True)
    assert code == 0 and "Traceback" not in stderr, stderr
    said = [line for line in stderr.splitlines() if "free on its disk" in line]
    assert len(said) == 1 and said[0].count("recording stopped") == 1, stderr
    videos = list(run_dir.glob("live-*.mp4"))
    assert len(videos) == 1 and decoded_frames(videos[0]) > 0


def catches(pid: int, sig: signal.Signals) -> bool:
    """Whether the process has a handler of its own for `sig` (its SigCgt mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) >> (sig - 1) & 1)


def group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                members.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return members


@pytest.mark.parametrize("after", [0.5, 2.0, 5.0])
@pytest.mark.parametrize("sig, group", [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGHUP, True)])
def test_a_stop_signal_at_any_moment_of_the_start_is_one_line_and_a_clean_exit(tiny_checkpoint, tmp_path, sig, group,
                                                                               after):
    run_dir = tmp_path / "run"
    began = time.monotonic()
    process = start(tiny_checkpoint, run_dir, "--headless", "--osc-port", "0", "--http-port", "0")
    # Before the interpreter runs the script's first line nothing can take a signal (on this loaded machine Python
    # itself can take over half a second to get there): wait for that, then for the moment tested (importing,
    # loading the model, the engine loading)
    wait_until(lambda: catches(process.pid, sig), process, timeout=30)
    time.sleep(max(0.0, began + after - time.monotonic()))
    code, stderr = stop_with(process, sig, group)
    assert code == 0 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    ends = [line for line in stderr.splitlines() if line.startswith(f"uncanny: stopped ({sig.name})")]
    assert len(ends) == 1, stderr
    assert not segments(process.pid), "shared memory left behind"
    deadline = time.monotonic() + 10
    while group_members(process.pid):  # the engine and ffmpeg end with it
        assert time.monotonic() < deadline, group_members(process.pid)
        time.sleep(0.1)
    events = run_dir / "events.jsonl"
    if events.exists():  # the engine got as far as the run folder: it stopped cleanly too
        kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
        assert kinds[-1] == "stop" and "died" not in kinds, kinds


def test_a_run_folder_that_cannot_be_made_now_is_exit_75_for_a_later_start(tiny_checkpoint, tmp_path, read_only,
                                                                            small_disk):
    (tmp_path / "runs").mkdir()
    read_only.on(tmp_path / "runs")
    full = small_disk("1m,nr_inodes=16")  # no inode left: nothing can be made there
    for n in range(100):
        try:
            (full / f"f{n}").touch()
        except OSError:
            break
    for run_dir, reason in ((tmp_path / "runs" / "run", "Read-only file system"),
                            (full / "run", "No space left on device")):
        result = subprocess.run([*RUN, "--checkpoint", str(tiny_checkpoint), "--headless", "--seconds", "1",
                                 "--device", "cpu", "--osc-port", "0", "--http-port", "0", "--run-dir", str(run_dir)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 75 and "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and f"cannot be used ({reason}); start again once it can be written" in errors[0]


@pytest.mark.parametrize("folder, message", [
    ("{tmp}/a-file/recordings", "cannot be written (Not a directory); choose a folder this user may write"),
    ("/proc/1/recordings", "is under /proc, a view of the kernel, not a disk"),
])
def test_a_record_folder_that_can_never_be_written_is_refused_at_start(tiny_checkpoint, tmp_path, folder, message):
    (tmp_path / "a-file").write_text("not a folder")
    folder = folder.format(tmp=tmp_path)
    preset = tmp_path / "p.toml"
    preset.write_text(f'[record]\nfolder = "{folder}"\n')
    result = subprocess.run([*RUN, "--checkpoint", str(tiny_checkpoint), "--headless", "--seconds", "1", "--device",
                             "cpu", "--osc-port", "0", "--http-port", "0", "--preset", str(preset), "--run-dir",
                             str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and f"{preset}: [record] folder '{folder}' {message}" in errors[0], result.stderr
    assert not [path for path in (tmp_path / "run").rglob("*") if path.is_file() and path.stat().st_size]


def test_a_record_folder_that_cannot_be_written_now_is_a_warning_and_the_show_starts(tiny_checkpoint, tmp_path,
                                                                                      read_only):
    (tmp_path / "recordings").mkdir()
    read_only.on(tmp_path / "recordings")
    preset = tmp_path / "p.toml"
    preset.write_text(f'[record]\nfolder = "{tmp_path / "recordings"}"\n')
    result = subprocess.run([*RUN, "--checkpoint", str(tiny_checkpoint), "--headless", "--seconds", "2", "--size",
                             "160x120", "--device", "cpu", "--osc-port", "0", "--http-port", "0", "--preset",
                             str(preset), "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert (f"uncanny: warning: [record] folder '{tmp_path / 'recordings'}' cannot be written (Read-only file "
            "system): recording is off until it can be") in result.stderr


def engine_of(pid: int) -> int | None:
    """The engine process of the installation `pid` (its spawned child that is not the resource tracker)."""
    for child, _ in children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command and b"resource_tracker" not in command:
            return child
    return None


def test_events_tell_a_display_killed_apart_from_a_stop_and_an_engine_killed_while_loading(tiny_checkpoint,
                                                                                            tmp_path):
    run_dir = tmp_path / "run"
    process = start(tiny_checkpoint, run_dir, "--headless", "--osc-port", "0", "--http-port", "0")
    wait_until(lambda: engine_of(process.pid) is not None, process)
    os.kill(engine_of(process.pid), signal.SIGKILL)  # while it loads: it has not opened the run folder yet
    wait_until(lambda: steps(run_dir) > 2, process)  # the engine started again, and trains
    engine = engine_of(process.pid)
    os.kill(process.pid, signal.SIGKILL)  # the display alone: the engine reads the end of its command pipe
    process.communicate(timeout=30)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{engine}").exists():  # it stops on its own, with a final snapshot
        assert time.monotonic() < deadline
        time.sleep(0.1)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    died = [e for e in events if e["event"] == "died"]
    assert len(died) == 1 and died[0]["while_loading"] and "killed by signal 9" in died[0]["cause"], died
    assert events[-1]["event"] == "abandoned" and "display process went away" in events[-1]["cause"]
    assert (run_dir / "snapshots" / f"it{events[-1]['iteration']:08d}.pt").exists()
