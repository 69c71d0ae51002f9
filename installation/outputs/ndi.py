"""NDI output: the picture as an NDI source on the network, for Resolume, OBS (DistroAV), TouchDesigner, vMix.

The NDI runtime comes with the optional extra `pip install uncanny[ndi]` (the `ndi-python` wheel bundles it, with its
licence file `libndi_licenses.txt`; NDI® is a trademark of Vizrt NDI AB) and is loaded only when an NDI output is
configured. Frames are sent as RGBX at the output's own size and rate from the sender thread (sender.py); NDI
compresses them itself (SpeedHQ), so a receiver sees the picture within a few levels per channel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..display.sinks import SinkContext
from ..validation import ConfigError, check_float, check_size
from .sender import FrameSender, Unavailable

MAX_NAME = 64  # characters of the source name

_runtime = threading.Lock()
_initialised = False


@dataclass(frozen=True)
class NdiConfig:
    """`[[output]] kind = "ndi"`: receivers list the source as `HOST (name)`."""

    kind: str = "ndi"
    name: str = "uncanny"
    size: str = "1920x1080"  # "WIDTHxHEIGHT" of the frames sent (the picture fitted into it)
    fps: float = 30.0
    hud: bool = False  # send the HUD too

    def __post_init__(self) -> None:
        if not self.name.strip() or len(self.name) > MAX_NAME or not self.name.isprintable():
            raise ConfigError(f"name must be 1 to {MAX_NAME} printable characters (the NDI source name), "
                              f"got {self.name!r}")
        check_size(self.size)
        check_float("fps", self.fps, 1.0, 240.0)

    @property
    def label(self) -> str:
        """The output's name in the HUD, OSC and status.json."""
        return f"ndi:{self.name}"


def _load() -> object:
    """The NDI library, initialised once per process; Unavailable names the fix."""
    global _initialised
    try:
        import NDIlib
    except ImportError:
        raise Unavailable("the NDI runtime is not installed: pip install 'uncanny[ndi]'") from None
    except OSError as error:  # the wheel is there but its libndi cannot load
        raise Unavailable(f"the NDI runtime cannot load ({error}); reinstall it: pip install 'uncanny[ndi]'") \
            from None
    with _runtime:
        if not _initialised:
            if not NDIlib.initialize():
                raise Unavailable("the NDI runtime refused to start on this CPU (it needs SSE4.2)")
            _initialised = True
    return NDIlib


class NdiSender(FrameSender):
    kind = "ndi"

    def __init__(self, config: NdiConfig, context: SinkContext) -> None:
        self.config = config
        self._ndi = self._sender = None
        super().__init__(config.label, check_size(config.size), config.fps, config.hud, context)

    def _describe(self) -> str:
        return f"NDI source '{self.config.name}', {super()._describe()}"

    def _open(self) -> None:
        ndi = self._ndi = _load()
        settings = ndi.SendCreate()
        settings.ndi_name = self.config.name
        settings.clock_video = False  # the loop keeps the rate: sending never waits for NDI's clock
        sender = ndi.send_create(settings)
        if sender is None:
            raise RuntimeError("NDI could not create the sender (is the name taken, or the network down?)")
        self._sender = sender
        frame = self._frame = ndi.VideoFrameV2()
        frame.FourCC = ndi.FOURCC_VIDEO_TYPE_RGBX
        frame.frame_rate_N, frame.frame_rate_D = round(self.fps * 1000), 1000

    def _send(self, pixels: bytes) -> None:
        width, height = self.size
        # GL's rows come bottom first; NDI wants the top first (the flipped copy is made here, off the loop)
        self._frame.data = np.ascontiguousarray(np.frombuffer(pixels, np.uint8).reshape(height, width, 4)[::-1])
        self._ndi.send_send_video_v2(self._sender, self._frame)

    def _shut(self) -> None:
        if self._sender is not None:
            self._ndi.send_destroy(self._sender)
            self._sender = None
