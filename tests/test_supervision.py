"""A hung engine is replaced while the display goes on, and systemd hears of every frame: real runs of
run_installation.py, a real SIGSTOP, and a unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import imageio_ffmpeg
import pytest

from installation.engine import EngineConfig, EngineError, EngineProcess
from installation.engine.commands import MAX_WAITING
from installation.live.notify import Notifier
from installation.live.status import read_status
from installation.live.supervisor import EngineSupervisor
from installation.models import create_stylegan1, save_gan

ROOT = Path(__file__).resolve().parents[1]
HANG_SECONDS = 3.0
PRESET_HANG_SECONDS = 30.0  # the least a preset may set ([engine] hang_seconds)


@pytest.fixture
def listener(tmp_path):
    """A socket where systemd's would be."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield path, sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            return messages


def test_notifier_speaks_the_protocol_to_paths_and_abstract_names_and_keeps_quiet_without_a_socket(listener):
    path, sock = listener
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})  # pings every 0.2 s at most
    assert notifier.interval == pytest.approx(0.2)
    for now in (10.0, 10.1, 10.19, 10.25, 10.3, 10.5):
        notifier.presented(now)
    notifier.stopping()
    notifier.close()
    assert received(sock) == ["READY=1\nSTATUS=presenting frames", "WATCHDOG=1", "WATCHDOG=1",
                              "STOPPING=1\nSTATUS=stopping"]

    name = f"uncanny-test-{os.getpid()}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind(b"\0" + name.encode())
    abstract.settimeout(0.2)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": f"@{name}"})
        assert notifier.interval == 1.0
        notifier.presented(0.0)
        notifier.close()
        assert received(abstract) == ["READY=1\nSTATUS=presenting frames"]
    finally:
        abstract.close()

    quiet = Notifier({})
    quiet.presented(0.0)
    quiet.stopping()
    assert quiet.address is None and quiet._socket is None


def test_commands_to_a_stopped_engine_never_block_and_the_supervisor_replaces_it_saying_so(tmp_path):
    """A hung engine stops reading its pipe: a display blocked on the full pipe could never kill it. The supervisor,
    driven here with its own clock, kills the silent engine, counts down on screen and starts a new one."""
    checkpoint = tmp_path / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), checkpoint)
    engine = EngineProcess(checkpoint, tmp_path / "run", EngineConfig(device="cpu", threads=1))
    engine.start()
    refused: list[str] = []

    def flood() -> None:
        for _ in range(20_000):  # ~150 bytes each: far more than a pipe holds; a setting waits as one value
            engine.send(("lr", 0.001))
        for _ in range(20_000):  # triggers wait in order, up to a bound
            try:
                engine.send("snapshot")
            except EngineError as error:
                refused.append(str(error))
                return

    try:
        # running, and its first snapshot on disk (written by a thread of its own): the new engine resumes from it
        engine.wait_for(lambda s: s.status == "running" and (tmp_path / "run/snapshots/it00000000.pt").exists())
        os.kill(engine.pid, signal.SIGSTOP)
        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        sender.join(60)
        assert not sender.is_alive(), "send() blocked on the stopped engine's full pipe"
        said: list[str] = []
        supervisor = EngineSupervisor(engine, said.append, backoff=(2.0, 5.0), hang_seconds=HANG_SECONDS)
        hung = engine.pid
        supervisor.watch(100.0)
        assert supervisor.watch(100.0 + HANG_SECONDS).alive and not said  # silent, but not for too long yet
        state = supervisor.watch(100.0 + HANG_SECONDS + 0.5)
        assert not state.alive and supervisor.hangs == 1
        assert said[0].startswith(f"engine hung (no heartbeat for 4 s, the limit is 3 s): killing process {hung}")
        assert said[1].endswith("restarting from the last snapshot in 2 s")
        assert supervisor.notice(104.0) == "engine down: restarting in 2 s (failure 1)"
        supervisor.watch(106.0)  # due: a new engine
        assert engine.pid != hung and supervisor.restarts == 1 and supervisor.notice(106.0) is None
        engine.wait_for(lambda s: s.status == "running")
    finally:
        engine.kill()
    assert refused == [f"the engine has not taken a command for a while ({MAX_WAITING} are waiting; its pipe is "
                       "full): it may be hung; snapshot not sent"]
    died = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()
            if '"died"' in line]
    assert len(died) == 1 and died[0]["cause"].startswith("the engine hung (no heartbeat for 4 s")


def children(pid: int) -> dict[int, str]:
    """Child processes of `pid`: their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


def engine_pid(pid: int) -> int | None:
    engines = [child for child, command in children(pid).items() if "spawn_main" in command]
    return engines[0] if len(engines) == 1 else None


def steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def test_a_stopped_engine_is_replaced_while_the_display_keeps_presenting_and_systemd_is_told(tmp_path, listener):
    path, sock = listener
    checkpoint = tmp_path / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), checkpoint)
    preset = tmp_path / "watched.toml"
    preset.write_text(f"[engine]\nhang_seconds = {PRESET_HANG_SECONDS}\nthreads = 1\nsnapshot_every = 5\n"
                      "[render]\nmax_fps = 5\n[display]\nfps = 10.0\n")
    run_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, str(ROOT / "run_installation.py"), "--checkpoint", str(checkpoint),
                                "--preset", str(preset), "--headless", "--size", "64x48", "--device", "cpu",
                                "--no-osc", "--http-port", "0", "--run-dir", str(run_dir)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1", "NOTIFY_SOCKET": str(path)})
    messages: list[tuple[float, str]] = []

    def until(predicate, what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert process.poll() is None, f"the installation exited: {process.communicate()[1]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}; got {messages[-5:]}"
            messages.extend((time.monotonic(), m) for m in received(sock))

    try:
        until(lambda: any(m.startswith("READY=1") for _, m in messages), "READY=1")
        until(lambda: steps(run_dir) > 3 and engine_pid(process.pid) is not None, "training")
        until(lambda: sum(m == "WATCHDOG=1" for _, m in messages) >= 2, "watchdog pings")
        hung = engine_pid(process.pid)
        os.kill(hung, signal.SIGSTOP)
        stopped_at = time.monotonic()
        until(lambda: engine_pid(process.pid) not in (None, hung), "a new engine")
        replaced_at = time.monotonic()
        assert hung not in children(process.pid)
        before = steps(run_dir)
        until(lambda: steps(run_dir) > before + 2, "training in the new engine")
        # the display never stopped: the pings went on while the engine was stopped
        pings = [t for t, m in messages if m == "WATCHDOG=1" and stopped_at < t < replaced_at]
        assert len(pings) >= PRESET_HANG_SECONDS - 1, (len(pings), replaced_at - stopped_at)
    finally:
        try:
            os.kill(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        _, stderr = process.communicate(timeout=300)
    messages.extend((time.monotonic(), m) for m in received(sock))
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "engine hung (no heartbeat for" in stderr and f"killing process {hung}" in stderr, stderr
    texts = [m for _, m in messages]
    assert texts[0].startswith("READY=1") and texts[-1].startswith("STOPPING=1")
    assert sum(t.startswith("READY=1") for t in texts) == 1
    assert set(texts[1:-1]) == {"WATCHDOG=1"}
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    died = [e for e in events if e["event"] == "died"]
    assert len(died) == 1 and "hung" in died[0]["cause"] and "was killed" in died[0]["cause"]
    video = next(run_dir.glob("live-*.mp4"))
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames >= len(texts) - 1  # every ping followed a frame written to the video, through the hang too
    final = read_status(run_dir)  # the last status says the run stopped, so a remote check does not call it hung
    assert final.phase == "stopped" and final.engine_restarts == 1 and not final.stale(final.updated + 3600)


def test_an_engine_stuck_in_the_kernel_ends_the_installation_with_the_status_the_service_restarts(tmp_path, freezer):
    """A GPU driver call that never returns leaves the engine in state D, where SIGKILL waits: the supervisor cannot
    replace it (it holds the run folder), so the installation exits 75 (EX_TEMPFAIL) in one line for the service to
    start it again, instead of freezing the display or crash-looping on the held folder."""
    from installation.arguments import EXIT_TRY_AGAIN

    checkpoint = tmp_path / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), checkpoint)
    preset = tmp_path / "watched.toml"
    preset.write_text(f"[engine]\nhang_seconds = {PRESET_HANG_SECONDS}\nthreads = 1\n[render]\nmax_fps = 5\n"
                      "[display]\nfps = 10.0\n")
    run_dir, log = tmp_path / "run", tmp_path / "stderr.txt"
    with open(log, "w") as stderr:  # a file, not a pipe: the frozen engine keeps its copy of stderr open
        process = subprocess.Popen([sys.executable, str(ROOT / "run_installation.py"), "--checkpoint",
                                    str(checkpoint), "--preset", str(preset), "--headless", "--size", "64x48",
                                    "--device", "cpu", "--no-osc", "--http-port", "0", "--run-dir", str(run_dir)],
                                   stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 180
        while steps(run_dir) < 3 or engine_pid(process.pid) is None:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the installation never started training"
            time.sleep(0.2)
        stuck = engine_pid(process.pid)
        freezer(stuck)
        process.wait(timeout=180)  # hang_seconds, the wait after SIGKILL (10 s), the stop
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = log.read_text()
    assert process.returncode == EXIT_TRY_AGAIN, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("uncanny: error:")]
    assert errors == [f"uncanny: error: the engine process {stuck} is still there 10 s after SIGKILL: it is stuck in "
                      "the kernel (state D), most likely in the GPU driver, and holds the run folder; the "
                      "installation stops so the service can restart it (reboot if this repeats)"], stderr
    assert "engine hung (no heartbeat for" in stderr and f"killing process {stuck}" in stderr
