"""The inverted fine-tuning engine: G trained towards what its own frozen D calls fake, live, with snapshots.

- `EngineConfig` (config.py): validated settings.
- `parse_command` / `Command` (commands.py): what can be changed between steps, and its validation.
- `Engine` (engine.py): in-process engine, `step()` / `apply(command)` / `run()`, run folder with metrics and events.
- `EngineProcess` (process.py): the engine in a spawned process, supervised and restartable by the caller.
- `inverted_loss` (losses.py): the logit, softplus and log objectives.
- `diversity` (similarity.py): 1 - mean pairwise MS-SSIM of the probe pictures; falls towards 0 as G collapses.

The names below load on first use: `engine.config` is read by presets and the fast commands, which must not load
torch.
"""

import importlib

_EXPORTS = {
    "COMMANDS": "commands", "Command": "commands", "CommandError": "commands", "parse_command": "commands",
    "LOSSES": "config", "ConfigError": "config", "EngineConfig": "config", "resolve_device": "config",
    "Engine": "engine", "EngineError": "engine", "fixed_latents": "engine", "inverted_loss": "losses",
    "EngineProcess": "process", "diversity": "similarity", "Snapshot": "snapshots", "SnapshotStore": "snapshots",
    "retained": "snapshots",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
