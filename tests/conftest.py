"""Shared fixtures: a headless EGL context, and an X server for window tests (started only when asked for)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import moderngl
import pytest
import torch

from installation.control.config import HttpConfig, OscConfig
from installation.display.gl import load_triton_before_gl

load_triton_before_gl()  # before the GL contexts below and in the tests (see installation/display/gl.py)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine spinning threads cost 2x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def default_ports_taken() -> Iterator[list[int]]:
    """The suite runs as if an installation held the default ports, as one does on a machine where the README's
    quick start still runs: every installation a test starts must take free ports (`--osc-port 0 --http-port 0`) or
    none (`--no-osc`, `--http-port 0`), and one that does not fails here too. Where one really runs, its ports are
    held already. (A new default port belongs in this list.)"""
    held = []
    for kind, port in ((socket.SOCK_DGRAM, OscConfig().port), (socket.SOCK_STREAM, HttpConfig().port)):
        sock = socket.socket(socket.AF_INET, kind)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:  # held already: by an installation running here, or by another test run
            sock.close()
            continue
        held.append(sock)
    yield [sock.getsockname()[1] for sock in held]
    for sock in held:
        sock.close()


@pytest.fixture(scope="session")
def egl_ctx() -> Iterator[moderngl.Context]:
    """One standalone EGL context (Mesa llvmpipe without a GPU) for all GL tests."""
    ctx = moderngl.create_standalone_context(backend="egl")
    yield ctx
    ctx.release()


@pytest.fixture(scope="session")
def x_display() -> Iterator[str]:
    """DISPLAY for GLFW: the one already set, else a private Xvfb (1280x720) for the whole session."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb not installed (apt-get install xvfb)")
    read_end, write_end = os.pipe()
    # -noreset: by default the server resets when its last client disconnects, and a window opened during the
    # reset fails with "Failed to open display"
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x720x24", "-nolisten", "tcp",
                               "-noreset"], pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    # Xvfb writes the display number it picked, then a newline, once it is ready. Read up to the newline:
    # closing the pipe after a partial read makes its second write fail, and Xvfb exits on that.
    reply = b""
    while not reply.endswith(b"\n") and (chunk := os.read(read_end, 16)):
        reply += chunk
    os.close(read_end)
    number = reply.decode().strip()
    if not number:
        server.kill()
        pytest.fail("Xvfb exited without reporting a display number")
    os.environ["DISPLAY"] = f":{number}"
    yield os.environ["DISPLAY"]
    server.terminate()
    server.wait(5)
    del os.environ["DISPLAY"]


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Callable[[str], Path]]:
    """`small_disk("1m")`: a folder on a tmpfs of that size (a disk that fills up for real), unmounted after."""
    mounted = []

    def mount(size: str) -> Path:
        disk = tmp_path / f"disk{len(mounted)}"
        disk.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                          capture_output=True).returncode != 0:
            pytest.skip("mounting a small tmpfs needs root")
        mounted.append(disk)
        return disk

    yield mount
    for disk in mounted:  # lazily: a process a failed test left behind may still hold a file there
        subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.fixture
def freezer(tmp_path) -> Iterator[Callable[[int], None]]:
    """`freezer(pid)`: freeze a process in a cgroup (v1 freezer) as a GPU driver call that never returns leaves it:
    in uninterruptible sleep (state D), where even SIGKILL waits. Thawed after the test, when a pending SIGKILL
    ends it."""
    root = Path("/sys/fs/cgroup/freezer")
    groups: list[Path] = []

    def freeze(pid: int) -> None:
        group = root / f"uncanny-test-{os.getpid()}-{pid}"
        try:
            group.mkdir()
        except OSError:
            pytest.skip("freezing a process needs the cgroup v1 freezer, writable (root)")
        groups.append(group)
        (group / "cgroup.procs").write_text(str(pid))
        (group / "freezer.state").write_text("FROZEN")
        deadline = time.monotonic() + 30
        while (group / "freezer.state").read_text().strip() != "FROZEN":
            assert time.monotonic() < deadline, "the process did not freeze"
            time.sleep(0.05)

    yield freeze
    for group in groups:
        (group / "freezer.state").write_text("THAWED")
        deadline = time.monotonic() + 30
        while True:  # the group can go once its processes have (a pending SIGKILL ends them when thawed)
            try:
                group.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)


@pytest.fixture(scope="session")
def two_monitors(tmp_path_factory) -> Iterator[str]:
    """The DISPLAY of an X server with two monitors side by side, as GLFW sees them: 800x600 at 0,0 (primary) and
    640x480 at 800,0 (TigerVNC's Xvnc, see tests/monitors_server.py). DISPLAY itself is left as it is."""
    if shutil.which("Xvnc") is None:
        pytest.skip("Xvnc not installed (apt-get install tigervnc-standalone-server)")
    from monitors_server import start_several_monitors

    server, display = start_several_monitors(tmp_path_factory.mktemp("xvnc"), [(0, 0, 800, 600), (800, 0, 640, 480)])
    yield display
    server.terminate()
    server.wait(5)


@pytest.fixture
def cli(capsys) -> Callable[..., tuple[int, str]]:
    """`cli(*args)`: the command line run in this process, ending as a process would: (exit code, stderr). For
    refusals that come before anything starts, it spares a new interpreter and its torch import; each kind of
    refusal keeps a test through a real process too (the exit code and stderr a user sees)."""
    from installation.cli import main
    from installation.signals import StopSignals

    def run(*args: object) -> tuple[int, str]:
        with StopSignals() as stop:  # the test process's own handlers come back after the command
            try:
                code = main([str(arg) for arg in args], stop=stop)
            except SystemExit as exit_:  # argparse's own refusal
                code = exit_.code
        return code, capsys.readouterr().err
    return run
class ReadOnly:
    """Folders turned read-only for real: a read-only bind mount of the folder over itself. New opens, renames and
    deletions there fail with EROFS, while descriptors opened before keep writing underneath, which is how a disk
    remounted read-only under a running program looks to it (a plain `remount,ro` is refused while files are open
    for writing)."""

    def __init__(self) -> None:
        self.mounted: list[Path] = []

    def on(self, folder: Path) -> None:
        if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode != 0:
            pytest.skip("a bind mount needs root")
        self.mounted.append(folder)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)

    def off(self, folder: Path) -> None:
        """Writable again (lazily unmounted: descriptors opened through the read-only view stay valid)."""
        self.mounted.remove(folder)
        subprocess.run(["umount", "-l", str(folder)], check=True, capture_output=True)


@pytest.fixture
def read_only() -> Iterator[ReadOnly]:
    """`read_only.on(folder)`, `read_only.off(folder)`; whatever is still read-only is made writable after."""
    turned = ReadOnly()
    yield turned
    for folder in list(turned.mounted):
        turned.off(folder)


@pytest.fixture
def fill_disk() -> Callable[[Path], Path]:
    """`fill_disk(folder)`: fill the disk of `folder` to its last byte with one file, returned (delete it to free
    the space again)."""
    return _fill


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for block in (2**20, 4096, 1):
            try:
                while f.write(b"\0" * block):
                    pass
            except OSError:  # no space left for a block this size
                pass
    return filler
