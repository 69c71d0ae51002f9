"""Read NVlabs `network-snapshot-*.pkl` files (stylegan2-ada-pytorch, stylegan3) without running their code.

NVlabs pickles every network through `torch_utils.persistence`: each module reduces to
`_reconstruct_persistent_obj(meta)`, where `meta` holds the full source of its defining file (`module_src`),
the class name and the module's `__dict__` (`state`: `_parameters`, `_buffers`, `_modules`, `_init_kwargs`).
NVlabs' own loader `exec`s `module_src`. Here `find_class` answers only an allowlist of data constructors, and
the reconstructor is replaced by `_record`, which keeps the tensors, the class name and the constructor
kwargs, and never looks at the source. Any other global (`os.system`, `builtins.eval`, ...) stops the read
with `UnsafePickle` before it is called; `torch_utils` and `dnnlib` are never imported.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

try:  # numpy 2 moved the scalar reconstructor; files written under numpy 1 still name numpy.core
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # numpy 1
    from numpy.core.multiarray import _reconstruct as _np_reconstruct
    from numpy.core.multiarray import scalar as _np_scalar

PERSISTENCE = ("torch_utils.persistence", "_reconstruct_persistent_obj")


class UnsafePickle(Exception):
    """The pickle asks for something outside the allowlist; the message names it."""


@dataclass
class ModuleRecord:
    """What a persistent NVlabs module leaves behind once its code is ignored."""

    class_name: str
    init_kwargs: dict[str, Any]
    params: dict[str, Tensor] = field(default_factory=dict)
    buffers: dict[str, Tensor] = field(default_factory=dict)
    modules: dict[str, ModuleRecord] = field(default_factory=dict)

    @property
    def short_name(self) -> str:
        return self.class_name.rsplit(".", 1)[-1]

    def tensors(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """(name, tensor) like `state_dict()`: parameters, buffers, then submodules."""
        for name, tensor in (*self.params.items(), *self.buffers.items()):
            yield prefix + name, tensor
        for name, module in self.modules.items():
            yield from module.tensors(f"{prefix}{name}.")

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().float() if v.is_floating_point() else v.detach() for k, v in self.tensors()}


def _record(meta: Any) -> ModuleRecord:
    """Stands in for `torch_utils.persistence._reconstruct_persistent_obj`; `meta['module_src']` is never read."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise UnsafePickle("a persistent object without the class record NVlabs writes (type 'class' + state)")
    state = meta["state"]

    def entries(key: str, kind: type) -> dict[str, Any]:
        items = state.get(key) or {}
        bad = [name for name, value in items.items() if value is not None and not isinstance(value, kind)]
        if bad:
            raise UnsafePickle(f"{meta.get('class_name')}.{key}[{bad[0]!r}] is not a {kind.__name__}")
        return {name: value for name, value in items.items() if value is not None}

    kwargs = state.get("_init_kwargs") or {}
    return ModuleRecord(str(meta.get("class_name")), dict(kwargs), entries("_parameters", Tensor),
                        entries("_buffers", Tensor), entries("_modules", ModuleRecord))


def _storage_from_bytes(data: bytes) -> Any:
    # torch's own _load_from_bytes unpickles with weights_only=False; the same bytes load as plain weights
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,  # how protocol 3 (Python 3.7, stylegan2-ada's era) writes a module's buffer-name set
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    # a storage pickles as torch.save bytes, so storage classes appear only inside those bytes
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("dnnlib.util", "EasyDict"): dict,  # an attribute-access dict: its items are all that matter
    PERSISTENCE: _record,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickle(f"it asks for {module}.{name}, which is not plain data") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickle("it holds persistent references, which NVlabs network pickles never do")


def is_nvlabs_pickle(head: bytes) -> bool:
    """A pickle (protocol >= 2) that names the persistence reconstructor or dnnlib's EasyDict."""
    return head[:1] == b"\x80" and (b"torch_utils.persistence" in head or b"dnnlib.util" in head)


def read_network_pickle(path: Path) -> dict[str, Any]:
    """The top-level dict of an NVlabs pickle with each network as a `ModuleRecord`.

    Raises `UnsafePickle` for anything beyond plain data and the usual pickle errors for broken files.
    """
    with open(path, "rb") as f:
        data = _RestrictedUnpickler(f).load()
    if not isinstance(data, dict):
        raise UnsafePickle(f"it holds a {type(data).__name__}, not the dict of networks NVlabs writes")
    return data
