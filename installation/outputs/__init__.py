"""Outputs beyond the screen: the picture sent to other software and machines, and more windows.

One module per kind, registered in `KINDS` (the preset's `[[output]]` tables name them with `kind`): its config
dataclass and the sink the live loop feeds (display/sinks.py). live/run.py builds one sink per configured output.

- `ndi.py`: an NDI source (the optional extra `uncanny[ndi]`).
- `stream.py`: MPEG-TS over SRT or UDP through ffmpeg.
- `windows.py`: further windows (projectors), each with its own view of the walks.
- `sender.py`: what both share: a sender thread with a newest-wins mailbox, retried with back-off.
"""

from .ndi import NdiConfig, NdiSender
from .stream import StreamConfig, StreamSender
from .windows import WindowConfig, WindowOutput

KINDS: dict[str, tuple[type, type]] = {
    "ndi": (NdiConfig, NdiSender),
    "stream": (StreamConfig, StreamSender),
    "window": (WindowConfig, WindowOutput),
}
