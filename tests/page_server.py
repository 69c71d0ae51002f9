"""What the HTTP and status-page tests share: free ports, plain HTTP requests, and a real run folder made by a short
real engine run (the `journey` command on a tiny StyleGAN), with a real recording, a log and a thumbnail."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from installation.control.web import RunFolderView

WAIT = 10.0  # seconds: the bound on every wait (a loaded 2-core machine); a healthy server answers in ms


def free_port() -> int:
    """A TCP port nobody holds now (the servers under test then bind it: they cannot take 0, which means off)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
          method: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def get_json(url: str) -> tuple[int, Any]:
    status, _, body = fetch(url)
    return status, json.loads(body) if body else None


def post_action(base: str, action: str, *args: Any, token: str = "") -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    status, _, body = fetch(f"{base}/ui/api/action", json.dumps({"action": action, "args": list(args)}).encode(),
                            headers)
    return status, json.loads(body)


def wait_for(condition: Any, what: str, wait: float = 30.0) -> Any:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {wait:g} s")


def make_run_folder(root: Path) -> Path:
    """A run folder as the engine leaves it (metrics.jsonl, events.jsonl, snapshots, pictures) after 20 real
    training steps, plus what the live installation adds: recordings/ with a finished video and one still being
    written, logs/uncanny.log and a thumbnail."""
    from installation.cli import main
    from installation.models import create_stylegan1, save_gan
    from installation.recording import VideoEncoder

    checkpoint = root / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2), checkpoint)
    run = root / "run"
    assert main(["journey", "--checkpoint", str(checkpoint), "--iterations", "20", "--every", "10", "--out", str(run),
                 "--device", "cpu", "--snapshot-every", "10", "--rows", "2", "--batch", "2"]) == 0
    recordings = run / "recordings"
    recordings.mkdir()
    video = VideoEncoder(recordings / "live-20261206-101500.mp4", 64, 64, 10.0)
    for i in range(10):
        video.write(np.full((64, 64, 3), i * 20, np.uint8))
    video.close()
    (recordings / "live-20261206-103000.mp4.partial").write_bytes(b"\0" * 100)  # still being written
    (recordings / ".hidden.mp4").write_bytes(b"\0")
    (run / "logs").mkdir()
    (run / "logs" / "uncanny.log").write_text("".join(f"2026-12-06 10:{m:02d}:00 WARNING installation: line {m}\n"
                                                      for m in range(60)))
    (run / "thumbnails").mkdir()
    from PIL import Image

    Image.new("RGB", (32, 24), (200, 40, 40)).save(run / "thumbnails" / "20261206-101000-it10.jpg")
    return run


def folder_view(run: Path) -> RunFolderView:
    return RunFolderView(run, run / "recordings", log=run / "logs" / "uncanny.log", thumbnails=run / "thumbnails")
