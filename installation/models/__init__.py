"""StyleGAN models that load real rosinality checkpoints, and the `GAN` face the rest of the project uses.

The names below load on first use: `models.config` is read by presets and the fast commands, which must not load
torch.
"""

import importlib

_EXPORTS = {"GAN": "gan", "create_stylegan1": "gan", "CheckpointError": "loader", "default_checkpoint": "config",
            "load_gan": "loader", "save_gan": "loader"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
