"""Video out: one ffmpeg encoder (its own process, fed by a writer thread) and the file rules around it.

- `VideoEncoder` (encoder.py): frames in, a crash-safe video file out; never blocks the caller on a dead ffmpeg.
  `choose_encoder`: H.264 on the GPU (NVENC) where ffmpeg can use it, x264 otherwise.
- `claim_path`, `claim_partial`, `recover_partials` (files.py): names that never overwrite a recording (a video's
  real name appears only once it is complete), leftovers made playable.
- `RecordConfig`, `check_codec` (config.py): the [record] table and the codec rule OSC shares.
- `LiveRecorder` (live.py): the performer's recordings of the presented picture (key v, /uncanny/record/*);
  `HeadlessVideo` the headless run's video, in files of a fixed length within a budget.
- `SupervisedVideo` (supervised.py): a video that outlives its encoder.
- `video_length`, `cut_to_whole_fragments`, `prune_oldest` (files.py): what a file holds as written; a file whose
  disk filled mid-write made playable; a folder kept within a size.
The offline loop and film exports are a package of their own (exports/).
"""

from .config import RecordConfig, check_codec
from .encoder import CODECS, ENCODERS, KEYFRAME_SECONDS, EncoderError, VideoEncoder, choose_encoder
from .files import claim_partial, claim_path, cut_to_whole_fragments, partial_path, prune_oldest, recover_partials, \
    video_length
from .supervised import SupervisedVideo

__all__ = ["CODECS", "ENCODERS", "EncoderError", "KEYFRAME_SECONDS", "RecordConfig", "SupervisedVideo",
           "VideoEncoder", "check_codec", "choose_encoder", "claim_partial", "claim_path", "cut_to_whole_fragments",
           "partial_path", "prune_oldest", "recover_partials", "video_length"]
