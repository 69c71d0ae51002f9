"""The live recorder's two readbacks, each handed to ffmpeg as it comes: RGBA bottom row first (every codec; ffmpeg
flips and converts) and, for yuv420p codecs (H.264) on a GPU's GL, the planes made by the GL pass (recording/yuv.py),
forced here on llvmpipe. Either way the decoded colours match the picture on screen (bars in order, right way up, U
and V not swapped), frame counts and sizes are exact; the GL pass's files are tagged BT.709 limited range."""

from __future__ import annotations

import os
import subprocess
import time

import imageio_ffmpeg
import numpy as np
import pytest

from installation.display.offscreen import Offscreen
from installation.display.presenter import Presenter
from installation.recording.config import RecordConfig
from installation.recording.encoder import EncoderError, VideoEncoder
from installation.recording.live import LiveRecorder
from installation.recording.yuv import converts_in_gl

FPS = 30.0
# Eight colour bars over the lower three quarters, a white band over the top quarter (which way up), 40 px each
BARS = np.array([[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0], [255, 0, 255], [255, 0, 0],
                 [0, 0, 255], [0, 0, 0]], np.uint8)


def bars_picture(width: int, height: int) -> np.ndarray:
    picture = np.repeat(BARS, -(-width // len(BARS)), axis=0)[:width][None].repeat(height, axis=0)
    picture[:height // 4] = 255
    picture[:height // 4, :width // 8] = 0  # a black corner top left: left from right
    return np.ascontiguousarray(picture)


def decode(path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader])


def stream_line(path) -> str:
    text = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True).stderr
    return next(line for line in text.splitlines() if "Video:" in line)


def record(ctx, tmp_path, size: tuple[int, int], codec: str, frames: int = 3, config: RecordConfig | None = None,
           in_gl: bool = False, start: float | None = None):
    """`frames` refreshes of the bars at `size` recorded, one on each frame's moment from `start` (the display
    clock, default now); the screen's picture (top row first) and the file."""
    surface = Offscreen(*size, ctx=ctx)
    presenter = Presenter(ctx, *size, crossfade=0.0)
    presenter.set_frame(bars_picture(*size), 0.0)
    presenter.recording_dot = True
    recorder = LiveRecorder(config or RecordConfig(fps=FPS), tmp_path, ctx, say=lambda text: None,
                            convert_in_gl=in_gl)
    start = time.monotonic() if start is None else start
    assert recorder.start(codec, 0, size, now=start)
    for k in range(frames):
        surface.use()
        presenter.render(start + k / FPS, [c for c in [recorder.capture_for(start + k / FPS, size)] if c])
    presenter.recording_dot = False
    surface.use()
    presenter.render(start)
    screen = surface.read()
    files = recorder.stop(now=start + (frames - 0.5) / FPS)
    recorder.close()
    presenter.release()
    surface.release()
    assert len(files) == 1 and recorder.counts.frames == frames and recorder.counts.repeated == 0
    return screen, files[0]


def bar_means(picture: np.ndarray) -> np.ndarray:
    """The mean colour of each bar's middle, below the white band."""
    height, width, _ = picture.shape
    bar = width // len(BARS)
    rows = slice(height // 2, height - 4)
    return np.array([picture[rows, k * bar + 4:(k + 1) * bar - 4].reshape(-1, 3).mean(0) for k in range(len(BARS))])


def test_the_gl_pass_is_used_on_gpus_only(egl_ctx):
    assert converts_in_gl(egl_ctx) == ("llvmpipe" not in egl_ctx.info["GL_RENDERER"])


@pytest.mark.parametrize("in_gl", [True, False], ids=["gl-yuv420p", "rgba"])
def test_h264_recordings_decode_to_the_colours_on_screen_right_way_up(egl_ctx, tmp_path, in_gl):
    screen, path = record(egl_ctx, tmp_path, (320, 240), "h264", frames=4, in_gl=in_gl)
    frames = decode(path)
    assert frames.shape == (4, 240, 320, 3)  # every frame, the output's size
    assert ("yuv420p(tv, bt709" in stream_line(path)) == in_gl  # players are told the matrix the pass used
    last = frames[-1].astype(int)
    assert np.abs(last - screen.astype(int)).mean() < 3
    assert np.abs(bar_means(last) - BARS.astype(int)).max() < 8  # each bar its colour: U and V not swapped
    assert last[10, 100].min() > 240 and last[10, 10].max() < 20  # the white band on top, its black corner left
    assert last[4:16, -16:-4, 0].max() > 240  # white there, never the red dot (which is on screen only)


def test_a_refresh_on_a_frames_moment_records_that_frame_whatever_the_clock_reads(egl_ctx, tmp_path):
    # at a clock of 1024.15 s, (1024.15 + k/30) - 1024.15 comes out a hair below k/30 for k = 1, 2, 3: without a
    # tolerance each of those refreshes found no frame due (the next one repeated it) and the file came out a
    # frame short
    assert all((1024.15 + k / FPS) - 1024.15 < k / FPS for k in (1, 2, 3))
    record(egl_ctx, tmp_path, (160, 120), "h264", frames=4, start=1024.15)


@pytest.mark.parametrize("codec, in_gl, size", [("h264", True, (162, 120)), ("h264", False, (162, 120)),
                                                ("hap", False, (160, 120))])
def test_an_output_the_codec_cannot_take_is_recorded_as_its_top_left(egl_ctx, tmp_path, codec, in_gl, size):
    screen, path = record(egl_ctx, tmp_path, (163, 121), codec, in_gl=in_gl)
    frames = decode(path)
    width, height = size
    assert frames.shape == (3, height, width, 3)
    assert np.abs(frames[-1].astype(int) - screen[:height, :width].astype(int)).mean() < 4


@pytest.mark.parametrize("in_gl", [True, False], ids=["gl-yuv420p", "rgba"])
def test_a_chosen_size_goes_through_the_scaler(egl_ctx, tmp_path, in_gl):
    screen, path = record(egl_ctx, tmp_path, (320, 240), "h264", config=RecordConfig(fps=FPS, size="160x120"),
                          in_gl=in_gl)
    frames = decode(path)
    assert frames.shape == (3, 120, 160, 3)
    assert np.abs(bar_means(frames[-1].astype(int)) - BARS.astype(int)).max() < 12
    assert frames[-1][5, 60].min() > 240 and frames[-1][5, 5].max() < 20


def test_codecs_coded_otherwise_take_rgba_even_where_the_gl_converts(egl_ctx, tmp_path):
    screen, path = record(egl_ctx, tmp_path, (320, 240), "prores", in_gl=True)
    frames = decode(path)
    assert frames.shape == (3, 240, 320, 3) and "yuv422p10le" in stream_line(path)
    assert np.abs(bar_means(frames[-1].astype(int)) - BARS.astype(int)).max() < 8


def test_the_encoder_takes_yuv420p_bytes_of_its_size_only(tmp_path):
    with pytest.raises(EncoderError, match="unknown input format 'nv12'; choose one of rgb24, rgba, yuv420p"):
        VideoEncoder(tmp_path / "x.mp4", 64, 48, FPS, input_format="nv12")
    encoder = VideoEncoder(tmp_path / "y.mp4", 64, 48, FPS, input_format="yuv420p")
    with pytest.raises(ValueError, match=r"expected 4608 \(yuv420p 64x48\)"):
        encoder.write(bytes(64 * 48 * 3))
    assert encoder.write(bytes([128]) * (64 * 48 * 3 // 2))
    assert encoder.close() is not None and len(decode(tmp_path / "y.mp4")) == 1


def test_the_encoder_runs_ffmpeg_at_the_priority_asked(tmp_path):
    encoder = VideoEncoder(tmp_path / "n.mp4", 64, 48, FPS, input_format="rgba", bottom_up=True, nice=5)
    try:
        assert os.getpriority(os.PRIO_PROCESS, encoder._process.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)
        assert encoder.write(bytes(64 * 48 * 4))
    finally:
        encoder.close()
    assert len(decode(tmp_path / "n.mp4")) == 1
