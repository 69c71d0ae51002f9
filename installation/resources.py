"""The data folders that ship with the package: the GLSL shaders and the presets.

In the repository they live at the top level (`shaders/`, `presets/`); a built wheel carries them inside the package
as `installation/_shaders` and `installation/_presets` (setup.py maps them there). `data_dir` finds them through
importlib.resources in an installed package and falls back to the checkout's top level when run from the source tree
(`run_installation.py`, PYTHONPATH, an editable install).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DATA_DIRS = ("shaders", "presets")  # top-level folders of the repository, packaged as installation/_NAME


def data_dir(name: str) -> Path:
    """The folder holding the shipped `name` files ("shaders" or "presets")."""
    if name not in DATA_DIRS:
        raise ValueError(f"unknown data folder {name!r}; one of {', '.join(DATA_DIRS)}")
    packaged = resources.files(__package__) / f"_{name}"
    if packaged.is_dir():
        return Path(str(packaged))  # wheels install unzipped: a real folder on disk
    return Path(__file__).resolve().parent.parent / name  # the source checkout
