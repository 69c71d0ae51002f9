"""uncanny: the live StyleGAN installation. Importing the package first sets the process up for GL next to torch.

- OpenMP threads wait passively: torch shares the few cores of a gallery PC with GL (llvmpipe renders on the CPU)
  and ffmpeg, and spinning OpenMP threads stalled the engine (0.05 steps/s on 2 cores). It must be set before torch
  loads; spawned engine processes inherit it. An OMP_WAIT_POLICY already set wins.
- triton (shipped with the CUDA builds of torch) is imported before any GL context exists. Mesa puts its libLLVM into
  the process's global symbol scope, and triton's bundled LLVM, loaded after it, binds to that one and crashes the
  process (shared/reference/recording-and-operations.md §1). torch loads triton on the first optimiser it builds.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def llvm_is_mapped() -> bool:
    """True when a libLLVM (Mesa's, loaded with a GL context) is already in this process."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("/libLLVM" in line for line in maps)
    except OSError:
        return False  # not Linux: no Mesa libLLVM in the global scope to clash with


def _load_triton_before_gl() -> None:
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    if llvm_is_mapped():
        # Too late: importing triton now crashes. Without it torch still trains; only triton's GPU kernels are lost.
        sys.modules["triton"] = None  # type: ignore[assignment]
        warnings.warn("uncanny: a GL context was created before the installation package was imported, so triton "
                      "is disabled in this process; import installation first", RuntimeWarning, stacklevel=3)
        return
    import triton  # noqa: F401


_load_triton_before_gl()
