"""A real GLFW window under Xvfb (started by the x_display fixture when DISPLAY is unset).

Each window runs in its own Python process: once a process has used an EGL context (the headless tests do),
Mesa refuses GLX MakeCurrent with an X BadAccess error that exits the process. The child reports what it saw;
the assertions are here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import glfw
import numpy as np
import pytest

from installation.display.monitors import find_monitor, monitor_names

ROOT = Path(__file__).resolve().parents[1]
RED, BLUE = (255, 0, 0), (0, 0, 255)

CHILD = f"""
import json, sys
import glfw
import numpy as np
sys.path.insert(0, {str(ROOT)!r})
from installation.display.presenter import Presenter
from installation.display.window import Window

out, fullscreen = sys.argv[1], sys.argv[2] == "fullscreen"
pressed = []
handlers = {{glfw.KEY_F: lambda: pressed.append("f"), glfw.KEY_X: lambda: 1 / 0}}
with Window(320, 240, fullscreen=fullscreen, vsync=False, handlers=handlers) as window:
    width, height = window.size
    presenter = Presenter(window.ctx, width, height, mode="stretch", letterbox=(0, 1, 0))
    frame = np.zeros((8, 8, 3), np.uint8)
    frame[:4], frame[4:] = {RED}, {BLUE}  # red over blue
    presenter.set_frame(frame, 0.0)
    window.poll()
    presenter.render(0.0)
    pixels = window.ctx.screen.read(components=3, alignment=1)  # the back buffer, before the swap
    window.swap()
    np.save(out + "/image.npy", np.frombuffer(pixels, np.uint8).reshape(height, width, 3)[::-1])
    for key, action in ((glfw.KEY_F, glfw.PRESS), (glfw.KEY_F, glfw.RELEASE), (glfw.KEY_X, glfw.PRESS),
                        (glfw.KEY_Q, glfw.PRESS)):
        window._on_key(window.handle, key, 0, action, 0)  # X's action fails: logged, not raised
    window.keys_enabled = False  # gallery mode
    window._on_key(window.handle, glfw.KEY_F, 0, glfw.PRESS, 0)
    mode = glfw.get_video_mode(glfw.get_primary_monitor())
    closing = [window.should_close]
    window.request_close()
    closing.append(window.should_close)
    facts = {{"size": [width, height], "screen": [mode.size.width, mode.size.height],
             "cursor_hidden": glfw.get_input_mode(window.handle, glfw.CURSOR) == glfw.CURSOR_HIDDEN,
             "auto_iconify": glfw.get_window_attrib(window.handle, glfw.AUTO_ICONIFY),
             "gl": window.ctx.version_code, "pressed": pressed, "closing": closing}}
facts["closed"] = window.handle is None
json.dump(facts, open(out + "/facts.json", "w"))
"""


@pytest.mark.parametrize("fullscreen", [False, True], ids=["windowed", "fullscreen"])
def test_window_shows_a_presented_frame(x_display, tmp_path, fullscreen):
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), "fullscreen" if fullscreen else "windowed"],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    facts = json.loads((tmp_path / "facts.json").read_text())
    width, height = facts["size"]
    assert (width, height) == (tuple(facts["screen"]) if fullscreen else (320, 240))
    assert facts["cursor_hidden"] == fullscreen
    assert facts["auto_iconify"] == 0 and facts["gl"] >= 330
    assert facts["pressed"] == ["f"]  # once: release, no-handler, failing and gallery-mode presses do nothing
    assert "key handler" in child.stderr  # the failing handler was logged
    assert facts["closing"] == [False, True] and facts["closed"]

    image = np.load(tmp_path / "image.npy")
    assert image.shape == (height, width, 3) and image.std() > 0
    texel = height // 8 + 1  # the bicubic ramp between the halves spans one source texel
    assert (image[: height // 2 - texel] == RED).all() and (image[height // 2 + texel:] == BLUE).all()


def test_monitors_by_index_or_name_fall_back_to_the_primary(x_display):
    assert glfw.init()  # no GL context here, so no clash with EGL
    try:
        names = monitor_names()
        primary = glfw.get_monitor_name(glfw.get_primary_monitor())
        assert names
        assert glfw.get_monitor_name(find_monitor(0)) == glfw.get_monitor_name(glfw.get_monitors()[0])
        assert glfw.get_monitor_name(find_monitor(names[0].upper())) == names[0].encode()
        for missing in (99, "no such monitor", None):
            assert glfw.get_monitor_name(find_monitor(missing)) == primary
    finally:
        glfw.terminate()


TOGGLE_CHILD = f"""
import json, sys
import glfw
sys.path.insert(0, {str(ROOT)!r})
from installation.display.window import Window

out, fullscreen = sys.argv[1], sys.argv[2] == "fullscreen"
with Window(320, 240, fullscreen=fullscreen, vsync=False) as window:
    if not fullscreen:
        glfw.set_window_pos(window.handle, 100, 50)
    frames = []
    for _ in range(2):  # `f` twice
        window.toggle_fullscreen()
        window.poll()
        frames.append([*glfw.get_window_pos(window.handle), *glfw.get_window_size(window.handle)])
    mode = glfw.get_video_mode(glfw.get_primary_monitor())
    json.dump({{"frames": frames, "fullscreen": window.fullscreen,
               "screen": [mode.size.width, mode.size.height]}}, open(out + "/toggle.json", "w"))
"""


@pytest.mark.parametrize("fullscreen", [False, True], ids=["windowed", "fullscreen"])
def test_f_twice_puts_the_window_back_on_screen(x_display, tmp_path, fullscreen):
    child = subprocess.run([sys.executable, "-c", TOGGLE_CHILD, str(tmp_path),
                            "fullscreen" if fullscreen else "windowed"], capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    facts = json.loads((tmp_path / "toggle.json").read_text())
    screen_width, screen_height = facts["screen"]
    windowed, full = facts["frames"][::-1] if not fullscreen else facts["frames"]
    assert full == [0, 0, screen_width, screen_height] and facts["fullscreen"] == fullscreen
    if fullscreen:  # started full-screen: a smaller window, all of it on the screen, centred
        x, y, width, height = windowed
        assert 0 < width < screen_width and 0 < height < screen_height
        assert (x, y) == ((screen_width - width) // 2, (screen_height - height) // 2)
    else:
        assert windowed == [100, 50, 320, 240]  # where and as large as it was
