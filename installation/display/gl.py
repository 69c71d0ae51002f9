"""Before the first GL context: load triton, where it is installed (the CUDA builds of torch ship it).

Mesa's GL driver brings its own libLLVM and puts it into the process's global symbol scope. triton carries another
LLVM whose symbols are not versioned: loaded after Mesa's, it binds to Mesa's copy and crashes the process in its
first static initialiser. Loaded first, it resolves to itself and both live side by side. torch imports triton on
its own the first time an optimiser is built, which in the installation comes after the window or offscreen
context; so every module here that creates a GL context imports this one first. It is not done at package import:
loading triton costs about a second, which the commands that draw nothing (--help, osc, service) need not pay.
"""

from __future__ import annotations

from .. import triton_pending


def load_triton_before_gl() -> None:
    """Import triton now if it is installed, not loaded yet, and no GL context exists (see the module docstring)."""
    if triton_pending():
        import triton  # noqa: F401
