"""Which model the installation shows ([model] table), and the precisions frames may be drawn in. No torch here:
presets and the fast commands read it without loading the models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..validation import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # of display frames (models/gan.py resolve_precision)
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "default.pt"


def default_checkpoint() -> Path | None:
    """The embedded default model shipped inside the package, or None where this release has none (here, not in the
    loader, so that `service install` finds it without loading torch)."""
    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None


@dataclass(frozen=True)
class ModelConfig:
    checkpoint: str = ""  # empty: the embedded default model
    resolution: int = 0  # 0: the largest the file was trained to
    raw_generator: bool = False  # the raw generator instead of its moving average

    def __post_init__(self) -> None:
        if self.resolution and (self.resolution < 4 or self.resolution & (self.resolution - 1)):
            raise ConfigError(f"resolution must be 0 or a power of two >= 4, got {self.resolution!r}")
