"""The inverted fine-tuning engine: G trained towards what its own frozen D calls fake, live, with snapshots.

- `EngineConfig` (config.py): validated settings.
- `parse_command` / `Command` (commands.py): what can be changed between steps, and its validation.
- `Engine` (engine.py): in-process engine, `step()` / `apply(command)` / `run()`, run folder with metrics and events.
- `EngineProcess` (process.py): the engine in a spawned process, supervised and restartable by the caller.
- `inverted_loss` (losses.py): the logit, softplus and log objectives.
- `diversity` (similarity.py): 1 - mean pairwise MS-SSIM of the probe pictures; falls towards 0 as G collapses.
"""

from .commands import COMMANDS, Command, CommandError, parse_command
from .config import LOSSES, ConfigError, EngineConfig, resolve_device
from .engine import Engine, EngineError, fixed_latents
from .losses import inverted_loss
from .process import EngineProcess
from .similarity import diversity
from .snapshots import Snapshot, SnapshotStore, retained

__all__ = [
    "COMMANDS", "LOSSES", "Command", "CommandError", "ConfigError", "Engine", "EngineConfig", "EngineError",
    "EngineProcess", "Snapshot", "SnapshotStore", "diversity", "fixed_latents", "inverted_loss", "parse_command",
    "resolve_device", "retained",
]
