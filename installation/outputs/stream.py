"""Stream output: the picture as MPEG-TS over SRT or UDP, through the ffmpeg that ships with imageio-ffmpeg, for
TouchDesigner (Video Stream In), OBS, VLC, ffplay or another machine's ffmpeg.

H.264 tuned for latency: x264 `ultrafast` + `zerolatency` (no B-frames, no lookahead), a keyframe every second so a
receiver that joins late starts within one, constant bit rate. `srt://:PORT?mode=listener` waits for a receiver to
call in (SRT's default latency is 120 ms); `udp://HOST:PORT` sends whether or not anyone listens. ffmpeg runs in a
session of its own; when it exits (a refused URL, a busy port, a receiver gone for SRT) the sender thread says why in
one line and starts it again after a back-off (sender.py).
"""

from __future__ import annotations

import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import imageio_ffmpeg

from ..display.sinks import SinkContext
from ..validation import ConfigError, check_float, check_int, check_size
from .sender import FrameSender

SCHEMES = ("srt", "udp")
STOP_SECONDS = 5.0


def check_url(url: str) -> str:
    """A stream URL ffmpeg can be given: srt:// or udp://, a port, no spaces; ConfigError names the form."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        port = parts.port if parts is not None else None
    except ValueError:
        parts = port = None
    if parts is None or parts.scheme not in SCHEMES or not port or any(c.isspace() or c == "\0" for c in url) \
            or (parts.scheme == "udp" and not parts.hostname):
        raise ConfigError(f"url must be \"srt://:PORT?mode=listener\", \"srt://HOST:PORT\" or \"udp://HOST:PORT\", "
                          f"got {url!r}")
    return url


@dataclass(frozen=True)
class StreamConfig:
    """`[[output]] kind = "stream"`."""

    kind: str = "stream"
    url: str = "srt://:9000?mode=listener"
    size: str = "1280x720"  # "WIDTHxHEIGHT" (even) of the stream
    fps: float = 30.0
    bitrate: int = 6000  # kbit/s
    hud: bool = False

    def __post_init__(self) -> None:
        check_url(self.url)
        width, height = check_size(self.size)
        if width % 2 or height % 2:
            raise ConfigError(f"size must be even in width and height for H.264 4:2:0, got {self.size!r}")
        check_float("fps", self.fps, 1.0, 120.0)
        check_int("bitrate", self.bitrate, 100, 100_000)

    @property
    def label(self) -> str:
        """The output's name in the HUD, OSC and status.json."""
        return f"stream:{self.url}"


class StreamSender(FrameSender):
    kind = "stream"

    def __init__(self, config: StreamConfig, context: SinkContext) -> None:
        self.config = config
        self._process: subprocess.Popen | None = None
        self._log: deque[str] = deque(maxlen=5)
        super().__init__(config.label, check_size(config.size), config.fps, config.hud, context)

    def _describe(self) -> str:
        return f"{self.config.url}, H.264 {super()._describe()}, {self.config.bitrate} kbit/s"

    def _open(self) -> None:
        width, height = self.size
        rate = f"{self.config.bitrate}k"
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin",
                   "-f", "rawvideo", "-pix_fmt", "rgba", "-s", f"{width}x{height}", "-r", f"{self.fps:g}", "-i", "-",
                   "-an", "-vf", "vflip", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                   "-pix_fmt", "yuv420p", "-g", str(max(1, round(self.fps))), "-b:v", rate, "-maxrate", rate,
                   "-bufsize", rate, "-f", "mpegts", self.config.url]
        self._log.clear()
        self._process = process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.PIPE, start_new_session=True)
        self._logger = threading.Thread(target=self._read_log, args=(process,), name=f"{self.name}-log", daemon=True)
        self._logger.start()

    def _read_log(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            if text := line.decode(errors="replace").strip():
                self._log.append(text)

    def _send(self, pixels: bytes) -> None:
        process = self._process
        try:
            process.stdin.write(pixels)
        except (BrokenPipeError, OSError, ValueError):
            code = process.wait(STOP_SECONDS)
            self._logger.join(1.0)  # its last words
            raise RuntimeError(f"ffmpeg exited ({code}): {self._log[-1] if self._log else 'no message'}") from None

    def _shut(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
