"""Video out: one ffmpeg encoder (its own process, fed by a writer thread) and the file rules around it.

- `VideoEncoder` (encoder.py): frames in, a crash-safe video file out; never blocks the caller on a dead ffmpeg.
- `claim_path`, `recover_partials` (files.py): names that never overwrite a recording, leftovers made playable.
- `loop` and `film` (export.py, their commands in cli.py): frame-exact seamless loops and the journey film.
- `LiveRecorder` (live.py): the performer's recordings of the presented picture (key v, /uncanny/record/*);
  `LoopExports` (loops.py): `loop` run as a low-priority child for /uncanny/record/loop during the show.
"""

from .encoder import CODECS, EncoderError, VideoEncoder
from .files import claim_path, recover_partials

__all__ = ["CODECS", "EncoderError", "VideoEncoder", "claim_path", "recover_partials"]
