"""uncanny: the live StyleGAN installation. Importing the package sets the process up for GL next to torch, cheaply
(the fast commands import it too, and load neither torch nor triton):

- OpenMP threads wait passively: torch shares the few cores of a gallery PC with GL (llvmpipe renders on the CPU)
  and ffmpeg, and spinning OpenMP threads stalled the engine (0.05 steps/s on 2 cores). It must be set before torch
  loads; spawned engine processes inherit it. An OMP_WAIT_POLICY already set wins.
- triton (shipped with the CUDA builds of torch) must load before any GL context exists: Mesa puts its libLLVM into
  the process's global symbol scope, and triton's own LLVM, loaded after it, binds to Mesa's copy and the process
  dies with SIGSEGV. torch loads triton with the first optimiser it builds. display/gl.py loads triton early, before
  every GL context this package creates; here, a process that made a GL context before importing the package gets
  triton switched off instead (torch still trains without it; only triton's GPU kernels are lost).
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


def triton_pending() -> bool:
    """True when triton is installed and not loaded yet. Where a GL context already exists it is too late to load it:
    triton is then switched off for this process (one warning) and this returns False."""
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return False
    if llvm_is_mapped():
        sys.modules["triton"] = None  # type: ignore[assignment]
        warnings.warn("uncanny: a GL context was created before the installation package was imported, so triton "
                      "is disabled in this process; import installation.display first", RuntimeWarning, stacklevel=3)
        return False
    return True


triton_pending()
