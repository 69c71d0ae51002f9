"""StyleGAN models that load real rosinality checkpoints, and the `GAN` face the rest of the project uses."""

from .gan import GAN, create_stylegan1
from .loader import CheckpointError, default_checkpoint, load_gan, save_gan

__all__ = ["GAN", "CheckpointError", "create_stylegan1", "default_checkpoint", "load_gan", "save_gan"]
