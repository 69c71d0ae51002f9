"""VideoWriter: real libx264 encodes through imageio-ffmpeg, from an offscreen EGL render."""

from __future__ import annotations

import imageio_ffmpeg
import numpy as np
import pytest

from installation.display.offscreen import Offscreen, VideoWriter
from installation.display.presenter import Presenter


def test_rendered_frames_become_an_mp4_with_every_frame(egl_ctx, tmp_path):
    path = tmp_path / "loop.mp4"
    with Offscreen(96, 64, ctx=egl_ctx) as screen, VideoWriter(path, 96, 64, fps=30) as video:
        presenter = Presenter(egl_ctx, 96, 64, crossfade=0)  # each video frame shows its own picture
        for i in range(30):
            presenter.set_frame(np.full((16, 16, 3), i * 8, np.uint8), i / 30)
            presenter.render(i / 30)
            video.write(screen.read())
        presenter.release()
    assert video.frames == 30
    assert imageio_ffmpeg.count_frames_and_secs(str(path)) == (30, 1.0)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (96, 64)
    last = np.frombuffer(list(reader)[-1], np.uint8).reshape(64, 96, 3)
    assert abs(int(last[32, 48].mean()) - 29 * 8) <= 4  # the picture, not just a valid container
    with pytest.raises(RuntimeError):
        video.write(np.zeros((64, 96, 3), np.uint8))


def test_file_is_finalised_when_an_exception_interrupts_and_odd_sizes_are_cropped(tmp_path):
    path = tmp_path / "interrupted.mp4"
    with pytest.raises(KeyboardInterrupt), VideoWriter(path, 65, 49, fps=25) as video:
        assert (video.width, video.height) == (64, 48)  # yuv420p needs even sizes
        for i in range(10):
            video.write(np.full((49, 65, 3), 20 * i, np.uint8))
        with pytest.raises(ValueError):
            video.write(np.zeros((48, 64), np.uint8))
        raise KeyboardInterrupt
    assert imageio_ffmpeg.count_frames_and_secs(str(path)) == (10, 0.4)
