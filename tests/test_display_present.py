"""Presenter shaders on a real headless EGL context: geometry of fit/fill/stretch, upscaling, crossfade, grid,
HUD and shader error reporting."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from installation.display.offscreen import Offscreen
from installation.display.presenter import Presenter
from installation.display.shaders import SHADER_DIR, ShaderError, describe_log

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
LETTERBOX = (0.2, 0.4, 0.6)
LETTERBOX_RGB = (51, 102, 153)


def solid(height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    return np.tile(np.array(colour, np.uint8), (height, width, 1))


def draw(egl_ctx, frame: np.ndarray, mode: str, size=(320, 240), **kwargs) -> np.ndarray:
    with Offscreen(*size, ctx=egl_ctx) as screen:
        presenter = Presenter(egl_ctx, *size, letterbox=LETTERBOX, mode=mode, **kwargs)
        assert presenter.set_frame(frame, 0.0)
        presenter.render(0.0)
        presenter.release()
        return screen.read()


def columns_of(row: np.ndarray, colour) -> np.ndarray:
    return np.flatnonzero((row == colour).all(-1))


def edge(values: np.ndarray) -> int:
    """First index where a rising 0..255 ramp crosses half way: an edge as the eye places it."""
    return int(np.flatnonzero(values > 127)[0])


def catmull_rom_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) resampling matrix of the Catmull-Rom kernel, pixel centres aligned, edges clamped."""
    matrix = np.zeros((target, source))
    for i in range(target):
        position = (i + 0.5) * source / target - 0.5
        first, f = int(np.floor(position)) - 1, position - np.floor(position)
        weights = (f * (-0.5 + f * (1 - 0.5 * f)), 1 + f * f * (-2.5 + 1.5 * f), f * (0.5 + f * (2 - 1.5 * f)),
                   f * f * (-0.5 + 0.5 * f))
        for k, weight in enumerate(weights):
            matrix[i, min(max(first + k, 0), source - 1)] += weight
    return matrix


def test_fit_letterboxes_with_exact_colour_and_keeps_orientation(egl_ctx):
    frame = np.concatenate([solid(16, 64, RED), solid(16, 64, GREEN)])  # 2:1, red on top
    out = draw(egl_ctx, frame, "fit")  # scale 5: 320x160 at y = 40
    assert (out[:40] == LETTERBOX_RGB).all() and (out[200:] == LETTERBOX_RGB).all()
    assert (out[40:118] == RED).all() and (out[122:200] == GREEN).all()


def test_fit_pillarboxes_a_portrait_frame(egl_ctx):
    out = draw(egl_ctx, solid(64, 32, BLUE), "fit")  # scale 3.75: 120x240 at x = 100
    for row in (0, 120, 239):
        assert columns_of(out[row], BLUE).tolist() == list(range(100, 220))
        assert (out[row, :100] == LETTERBOX_RGB).all() and (out[row, 220:] == LETTERBOX_RGB).all()


def test_fill_crops_and_covers_the_screen(egl_ctx):
    frame = np.concatenate([solid(32, 32, GREEN), solid(32, 32, BLUE)], axis=1)
    frame[:, :8] = RED  # lands at x -80..-20: cropped away
    frame[:, 12:16] = YELLOW  # scale 7.5 from x = -80: columns 10..40
    out = draw(egl_ctx, frame, "fill")
    assert not (out == LETTERBOX_RGB).all(-1).any()
    assert not (out == RED).all(-1).any()
    red = out[120, :, 0].astype(int)  # only the yellow strip has red
    assert abs(edge(red) - 10) <= 1 and abs(edge(red[::-1]) - (319 - 40)) <= 1
    assert abs(edge(out[120, :, 2]) - 160) <= 1


def test_stretch_maps_the_frame_onto_the_whole_screen(egl_ctx):
    frame = np.concatenate([solid(8, 8, GREEN), solid(8, 8, BLUE)], axis=1)  # 2:1 onto 4:3
    out = draw(egl_ctx, frame, "stretch")
    assert not (out == LETTERBOX_RGB).all(-1).any()
    for row in (0, 239):
        assert abs(edge(out[row, :, 2]) - 160) <= 1
        assert (out[row, :130] == GREEN).all() and (out[row, 190:] == BLUE).all()  # ringing stays near the edge


def test_upscaling_is_catmull_rom_bicubic(egl_ctx):
    frame = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    out = draw(egl_ctx, frame, "stretch", size=(200, 120)).astype(int)
    # separable like the shaders, rows first, kept in 8 bits in between (as Pillow does)
    rows = np.clip(np.round(np.einsum("jkc,xk->jxc", frame.astype(float), catmull_rom_matrix(24, 200))), 0, 255)
    reference = np.clip(np.round(np.einsum("yj,jxc->yxc", catmull_rom_matrix(16, 120), rows)), 0, 255)
    assert np.abs(out - reference).max() <= 1
    nearest = np.asarray(Image.fromarray(frame).resize((200, 120), Image.NEAREST)).astype(int)
    assert np.abs(out - nearest).mean() > 10  # really filtered, not blocky


def test_crossfade_mixes_previous_and_current_frames(egl_ctx):
    with Offscreen(64, 64, ctx=egl_ctx) as screen:
        presenter = Presenter(egl_ctx, 64, 64, crossfade=1.0, mode="stretch")

        def at(t: float) -> np.ndarray:
            presenter.render(t)
            return screen.read()[32, 32].astype(int)

        presenter.set_frame(solid(8, 8, RED), 0.0)
        assert at(0.0).tolist() == list(RED)  # nothing to fade from
        presenter.set_frame(solid(8, 8, BLUE), 10.0)
        assert at(10.0).tolist() == list(RED)
        assert np.abs(at(10.5) - [127.5, 0, 127.5]).max() <= 2
        assert at(11.0).tolist() == list(BLUE) and at(20.0).tolist() == list(BLUE)
        presenter.set_frame(solid(16, 16, GREEN), 30.0)  # new size: a cut, not a fade
        assert at(30.0).tolist() == list(GREEN)

        presenter.crossfade = None  # automatic: the fade lasts the measured interval between frames
        for i, colour in enumerate((RED, BLUE, RED, BLUE)):
            presenter.set_frame(solid(16, 16, colour), 40.0 + 0.1 * i)
        assert np.abs(at(40.35) - [127.5, 0, 127.5]).max() <= 2
        presenter.release()


def test_grid_shows_each_frame_in_its_cell(egl_ctx):
    rng = np.random.default_rng(1)
    colours = rng.integers(0, 256, (9, 3))
    frames = np.stack([solid(16, 16, tuple(c)) for c in colours])
    with Offscreen(300, 300, ctx=egl_ctx) as screen:
        presenter = Presenter(egl_ctx, 300, 300, letterbox=LETTERBOX)
        presenter.set_grid(frames, 0.0)
        presenter.render(0.0)
        out = screen.read()
        for i, colour in enumerate(colours):
            row, column = divmod(i, 3)
            assert (out[row * 100 + 3:row * 100 + 97, column * 100 + 3:column * 100 + 97] == colour).all()
        presenter.set_grid(frames[:5], 1.0)  # 3 columns, 2 rows, one empty cell; 300x200 centred
        presenter.render(1.0)
        out = screen.read()
        assert (out[:50] == LETTERBOX_RGB).all() and (out[250:] == LETTERBOX_RGB).all()
        assert (out[60:140, 10:90] == colours[0]).all() and (out[160:240, 110:190] == colours[4]).all()
        assert (out[160:240, 210:290] == LETTERBOX_RGB).all()
        presenter.release()


def test_rgba_frames_go_up_as_rgba8_and_show_as_their_rgb(egl_ctx):
    """RGBA is what GPUs keep textures in (uploaded without the driver widening each pixel); alpha is not shown."""
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (2, 24, 24, 1), dtype=np.uint8)], axis=-1)
    shown = []
    with Offscreen(96, 96, ctx=egl_ctx) as screen:
        presenter = Presenter(egl_ctx, 96, 96, crossfade=1.0)
        for frames in (rgb, rgba, rgb):  # a fade across the change of layout too
            presenter.set_grid(frames, 0.0)
            presenter.set_grid(frames[::-1], 10.0)
            presenter.render(10.5)
            shown.append(screen.read())
        assert presenter._textures[0].components == 3 and presenter._textures[1].components == 3
        presenter.set_grid(rgba, 20.0)
        assert presenter._textures[0].components == 4
        presenter.release()
    assert np.array_equal(shown[0], shown[1]) and np.array_equal(shown[0], shown[2])


def test_hud_changes_only_its_box_and_shows_frame_errors(egl_ctx):
    with Offscreen(320, 240, ctx=egl_ctx) as screen:
        presenter = Presenter(egl_ctx, 320, 240, mode="stretch")
        presenter.set_frame(solid(8, 8, GREEN), 0.0)
        presenter.render(0.0)
        plain = screen.read()
        presenter.set_hud("iteration 1200\nloss 0.41  D 0.12\nfps 60.0")
        presenter.render(0.0)
        changed = (screen.read() != plain).any(-1)
        rows, cols = np.nonzero(changed)
        assert changed.sum() > 500
        assert rows.min() >= 2 and cols.min() >= 2 and rows.max() < 120 and cols.max() < 200
        presenter.set_hud(None)
        presenter.render(0.0)
        assert (screen.read() == plain).all()

        assert not presenter.set_frame(np.zeros((8, 8, 3), np.float32), 1.0)  # refused, not raised
        assert "float32" in presenter.error
        presenter.render(1.0)
        out = screen.read()
        assert (out != plain).any(-1)[:40, :40].any()  # the error is on screen
        assert (out[200:, 250:] == GREEN).all()  # over the last good frame
        assert not presenter.set_frame(np.zeros((0, 8, 3), np.uint8), 1.0)
        tall = egl_ctx.info["GL_MAX_TEXTURE_SIZE"] // 2 + 1  # two rows of these stack past the GL limit
        assert not presenter.set_grid(np.zeros((4, tall, 1, 3), np.uint8), 1.0) and "too tall" in presenter.error
        assert presenter.set_frame(solid(8, 8, GREEN), 2.0) and presenter.error is None
        presenter.render(2.0)
        assert (screen.read() == plain).all()
        presenter.release()


def test_shader_compile_error_names_file_and_line(egl_ctx, tmp_path):
    (tmp_path / "fullscreen.vert").write_text((SHADER_DIR / "fullscreen.vert").read_text())
    for name in ("hud.frag", "resample_x.frag"):
        (tmp_path / name).write_text((SHADER_DIR / name).read_text())
    (tmp_path / "present.frag").write_text(
        "#version 330 core\nout vec4 colour;\n\nvoid main() {\n    colour = vec4(undeclared, 1.0);\n}\n")
    with pytest.raises(ShaderError) as caught:
        Presenter(egl_ctx, 64, 64, shader_dir=tmp_path)
    assert f"{tmp_path / 'present.frag'}:5: error:" in str(caught.value)
    assert "undeclared" in str(caught.value)


def test_driver_logs_of_other_vendors_and_link_errors_are_located():
    files = {"vertex_shader": SHADER_DIR / "fullscreen.vert", "fragment_shader": SHADER_DIR / "present.frag"}
    nvidia = "GLSL Compiler failed\n\nfragment_shader\n===============\n0(42) : error C1008: undefined variable\n"
    assert describe_log(nvidia, files) == "shaders/present.frag:42: error C1008: undefined variable"
    amd = "GLSL Compiler failed\n\nvertex_shader\n=============\nERROR: 0:7: 'x' : undeclared identifier\n"
    assert describe_log(amd, files) == "shaders/fullscreen.vert:7: error: 'x' : undeclared identifier"
    link = "GLSL Linker failed\n\nProgram\n=======\nerror: unresolved reference to function `f'\n"
    assert describe_log(link, files) == \
        "shaders/fullscreen.vert + shaders/present.frag: link error: unresolved reference to function `f'"
