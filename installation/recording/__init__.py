"""Video out: one ffmpeg encoder (its own process, fed by a writer thread) and the file rules around it.

- `VideoEncoder` (encoder.py): frames in, a crash-safe video file out; never blocks the caller on a dead ffmpeg.
  `choose_encoder`: H.264 on the GPU (NVENC) where ffmpeg can use it, x264 otherwise.
- `claim_path`, `claim_partial`, `recover_partials` (files.py): names that never overwrite a recording (a video's
  real name appears only once it is complete), leftovers made playable.
- `RecordConfig`, `check_codec` (config.py): the [record] table and the codec rule OSC shares.
- `LiveRecorder` (live.py): the performer's recordings of the presented picture (key v, /uncanny/record/*).
The offline loop and film exports are a package of their own (exports/).
"""

from .config import RecordConfig, check_codec
from .encoder import CODECS, ENCODERS, KEYFRAME_SECONDS, EncoderError, VideoEncoder, choose_encoder
from .files import claim_partial, claim_path, partial_path, recover_partials

__all__ = ["CODECS", "ENCODERS", "EncoderError", "KEYFRAME_SECONDS", "RecordConfig", "VideoEncoder", "check_codec",
           "choose_encoder", "claim_partial", "claim_path", "partial_path", "recover_partials"]
