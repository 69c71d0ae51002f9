"""`run_installation.py monitors` and monitor choice on a real X server with two monitors (Xvnc, see
tests/monitors_server.py), and with no display at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHOOSE = f"""
import json, sys
import glfw
sys.path.insert(0, {str(ROOT)!r})
from installation.display.monitors import find_monitor
assert glfw.init()
print(json.dumps([glfw.get_monitor_pos(find_monitor(which)) for which in (0, 1, "vnc-1", 7)]))
glfw.terminate()
"""

FULL_SCREEN_ON = f"""
import json, sys
import glfw
sys.path.insert(0, {str(ROOT)!r})
from installation.display.window import Window
with Window(320, 240, fullscreen=True, monitor=int(sys.argv[1]), vsync=False) as window:
    window.ctx.clear(0.0, 1.0, 0.0)
    green = window.ctx.screen.read(components=3)[:3]
    window.swap()
    print(json.dumps([*glfw.get_window_pos(window.handle), *window.size, window.ctx.version_code >= 330,
                      list(green)]))
"""


def monitors(display: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"} | ({"DISPLAY": display} if display else {})
    return subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "monitors", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_two_monitors_are_listed_in_order_with_size_position_and_primary(two_monitors):
    listed = monitors(two_monitors)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[:2] == ["0  VNC-0: 800x600 at 0,0, 60 Hz  (primary)", "1  VNC-1: 640x480 at 800,0, 60 Hz"], lines
    assert "--monitor N" in lines[2]
    as_json = monitors(two_monitors, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == [
        {"index": 0, "name": "VNC-0", "width": 800, "height": 600, "x": 0, "y": 0, "refresh_hz": 60, "primary": True},
        {"index": 1, "name": "VNC-1", "width": 640, "height": 480, "x": 800, "y": 0, "refresh_hz": 60,
         "primary": False}]


def test_the_window_finds_a_monitor_by_index_or_name_as_listed(two_monitors):
    env = {**os.environ, "DISPLAY": two_monitors}
    chosen = subprocess.run([sys.executable, "-c", CHOOSE], env=env, capture_output=True, text=True, timeout=60)
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(chosen.stdout) == [[0, 0], [800, 0], [800, 0], [0, 0]]  # 7: none, so the primary
    assert "monitor 7 not found among 0 'VNC-0', 1 'VNC-1'; using the primary monitor" in chosen.stderr
    shown = subprocess.run([sys.executable, "-c", FULL_SCREEN_ON, "1"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == [800, 0, 640, 480, True, [0, 255, 0]]  # covers the second monitor, GL 3.3+


def test_without_a_display_it_is_one_line_and_exit_75():
    listed = monitors(None)
    assert listed.returncode == 75 and listed.stdout == "", listed
    assert listed.stderr.count("\n") == 1 and "no display to list monitors on" in listed.stderr, listed.stderr
