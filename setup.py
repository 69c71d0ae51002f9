"""Packaging beyond what pyproject.toml can say: the top-level shaders/ and presets/ folders of the repository go
into the wheel as the data-only packages installation._shaders and installation._presets, which
installation/resources.py reads through importlib.resources."""

import importlib.util

from setuptools import find_packages, setup

# resources.py imports only the standard library: load it alone, without the package (and torch) behind it
_spec = importlib.util.spec_from_file_location("_uncanny_resources", "installation/resources.py")
_resources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_resources)
DATA_PACKAGES = {f"installation._{name}": name for name in _resources.DATA_DIRS}

setup(packages=find_packages(include=["installation", "installation.*"]) + list(DATA_PACKAGES),
      package_dir=DATA_PACKAGES,
      package_data={"installation": ["assets/*.pt", "assets/*.md",  # the embedded default model and its licence
                                     "control/page/*"],  # the status page: HTML, CSS and JS served at /ui/
                    **{package: ["*"] for package in DATA_PACKAGES}})
