"""The live installation end to end: a real engine process, shared-memory frames, a real GLFW window (Xvfb)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from installation import app
from installation.engine import EngineConfig
from installation.models import create_stylegan1, save_gan
from installation.presets import DisplayConfig, Preset, RenderConfig, WalkConfig

ROOT = Path(__file__).resolve().parents[1]
SIZE = (320, 240)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), path)
    return path


def preset(period: float = 4.0) -> Preset:
    return Preset(engine=EngineConfig(device="cpu", threads=1, snapshot_every=10, probe_every=5, lr=3e-3),
                  walk=WalkConfig(keyframes=3, period=period, grid=2),
                  display=DisplayConfig(fullscreen=False, width=SIZE[0], height=SIZE[1], crossfade=0.0),
                  render=RenderConfig(share=0.5, max_fps=20))


def run_for(installation, window, seconds):
    """Tick the display for a while; return the last picture (read before the swap, top row first)."""
    end = time.monotonic() + seconds
    image = None
    while time.monotonic() < end:
        window.ctx.screen.use()
        installation.tick(window.size)
        image = np.frombuffer(window.ctx.screen.read(components=3), np.uint8).reshape(SIZE[1], SIZE[0], 3)[::-1]
        window.swap()
        window.poll()
    return image.copy()


def wait(installation, window, predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while not predicate(installation.state):
        assert time.monotonic() < end, f"timed out; engine state {installation.state.get('status')}"
        run_for(installation, window, 0.1)


def test_window_shows_the_generator_while_it_trains_and_survives_an_engine_kill(x_display, tiny_checkpoint,
                                                                                 tmp_path, monkeypatch):
    from installation.display.window import Window

    monkeypatch.setattr(app, "RESTART_BACKOFF", (0.5,))
    with Window(*SIZE) as window:
        installation = app.Installation(preset(period=3600.0), tiny_checkpoint, 32, tmp_path / "run", window.ctx,
                                        window.size)
        try:
            wait(installation, window, lambda s: s.get("iteration", 0) >= 5)
            installation.engine.send("pause")
            wait(installation, window, lambda s: s.get("status") == "paused")
            run_for(installation, window, 0.5)
            paused_a = run_for(installation, window, 0.3)
            paused_b = run_for(installation, window, 0.3)
            assert paused_a.std() > 10, "the window is blank"
            # paused weights and a walk of an hour per loop: the picture holds still
            assert np.abs(paused_a.astype(int) - paused_b.astype(int)).mean() < 1.0

            iteration = installation.state["iteration"]
            installation.engine.send("resume")
            wait(installation, window, lambda s: s.get("iteration", 0) >= iteration + 15)
            trained = run_for(installation, window, 0.5)
            assert np.abs(trained.astype(int) - paused_b.astype(int)).mean() > 2.0, "weight updates do not show"

            installation.toggle_grid()
            run_for(installation, window, 1.5)
            assert installation.presenter._shape[0] == 4  # the 2 x 2 population view arrived from the engine

            before = installation._last_sequence
            installation.engine.kill()
            shown = run_for(installation, window, 0.3)
            assert "engine stopped" in (installation._hud_text(time.monotonic()) or "")
            assert shown.std() > 10, "the last frame must stay on screen"
            wait(installation, window, lambda s: s.get("alive") and s.get("status") == "running")
            run_for(installation, window, 1.0)
            assert installation._last_sequence > before, "the walk did not resume after the restart"
        finally:
            installation.close()


def test_walk_frames_move_between_refreshes_while_paused(x_display, tiny_checkpoint, tmp_path):
    from installation.display.window import Window

    with Window(*SIZE) as window:
        installation = app.Installation(preset(period=2.0), tiny_checkpoint, 32, tmp_path / "run", window.ctx,
                                        window.size)
        try:
            installation.engine.send("pause")
            wait(installation, window, lambda s: s.get("status") == "paused")
            a = run_for(installation, window, 0.4)
            b = run_for(installation, window, 0.4)
            assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0, "the latent walk does not move"
        finally:
            installation.close()


def test_headless_run_writes_video_and_png(tiny_checkpoint, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_installation.py"), "--checkpoint", str(tiny_checkpoint), "--headless",
         "--seconds", "4", "--size", "160x120", "--run-dir", str(tmp_path / "run"), "--device", "cpu"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "run" / "live.mp4"))
    assert frames >= 30  # 4 s at 30 fps, less the start-up of the engine process
    assert (tmp_path / "run" / "last_frame.png").stat().st_size > 0
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") > 0


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "{tmp}/missing.pt"], "no such file"),
    (["--checkpoint", "{g_only}"], "no discriminator"),
    (["--preset", "nightclub"], "preset 'nightclub' not found"),
    (["--size", "10x10"], "size must be WIDTHxHEIGHT"),
    (["--seconds", "0"], "expected a positive number"),
    (["--device", "tpu"], "device must be auto, cpu, cuda or cuda:N"),
])
def test_bad_run_options_are_one_line(tiny_checkpoint, tmp_path, args, message):
    import torch

    from installation.models import load_gan

    gan = load_gan(tiny_checkpoint)
    torch.save(gan.generator.state_dict(), tmp_path / "g_only.model")
    args = [a.format(tmp=tmp_path, g_only=tmp_path / "g_only.model") for a in args]
    result = subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "--headless", "--seconds", "1",
                             "--run-dir", str(tmp_path / "run"), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr



def test_quick_start_command_runs_without_any_checkpoint(tmp_path):
    """`run_installation.py` alone: the embedded model where one ships, else an untrained demo it says it is."""
    from installation.models import default_checkpoint

    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "--seconds", "3", "--size", "160x120",
                             "--device", "cpu"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "running headless" in result.stderr
    name = "untrained-demo" if default_checkpoint() is None else default_checkpoint().stem
    assert (tmp_path / "runs" / name / "live.mp4").stat().st_size > 0
    if default_checkpoint() is None:
        assert "UNTRAINED demo network" in result.stderr
