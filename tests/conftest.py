"""Shared fixtures: a headless EGL context, and an X server for window tests (started only when asked for)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import moderngl
import pytest
import torch

import installation  # noqa: F401  # first: it loads triton before the GL contexts below (see installation/__init__.py)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine spinning threads cost 2x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    for disk in mounted:
        subprocess.run(["umount", str(disk)], check=True)


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
