"""A GL context and then a torch optimiser in one process, the order of every test run and of the installation.

With the CUDA build of torch (it ships triton) and Mesa, that order crashed the process with SIGSEGV: two LLVMs in
one process (installation/display/gl.py says why). Each case runs in a fresh interpreter, since a crash would take
pytest down with it and one process cannot undo what it has loaded. `.ci/run` runs the suite in a virtualenv
installed the README's way too, where triton is present.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HAS_TRITON = importlib.util.find_spec("triton") is not None

GL_THEN_ADAM = """
import moderngl
ctx = moderngl.create_standalone_context(backend="egl")
ctx.clear(1.0, 0.0, 0.0)
import torch
weight = torch.nn.Parameter(torch.ones(3))
optimiser = torch.optim.Adam([weight], lr=0.1)
weight.sum().backward()
optimiser.step()
print("stepped", float(weight.sum()), ctx.info["GL_RENDERER"])
"""


def run_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_an_optimiser_after_a_gl_context_when_the_package_is_imported_first():
    child = run_child("import installation.display.offscreen\n" + GL_THEN_ADAM)
    assert child.returncode == 0, f"exit code {child.returncode}: {child.stderr[-2000:]}"
    assert "stepped 2.7" in child.stdout  # Adam moved each weight by lr
    assert "triton is disabled" not in child.stderr
    loaded = "import sys, {}; print('triton' in sys.modules, 'torch' in sys.modules)"
    # the display modules load triton before any GL context; the package alone (the fast commands) loads nothing
    assert run_child(loaded.format("installation.display.window")).stdout.split() == [str(HAS_TRITON), "False"]
    assert run_child(loaded.format("installation")).stdout.split() == ["False", "False"]


def test_a_gl_context_made_before_the_package_disables_triton_instead_of_crashing():
    child = run_child(GL_THEN_ADAM.replace("import torch\n", "import torch\nimport installation.engine\n")
                      + "print('llvm mapped', installation.llvm_is_mapped())\n")
    assert child.returncode == 0, f"exit code {child.returncode}: {child.stderr[-2000:]}"
    assert "stepped 2.7" in child.stdout
    # Only Mesa's GL maps a libLLVM (llvmpipe, and Mesa's GPU drivers); NVIDIA's GL has none to clash with triton.
    # Where triton is installed beside such a GL, the one line says why it is off; otherwise there is nothing to say.
    mesa_llvm = "llvm mapped True" in child.stdout
    assert ("triton is disabled" in child.stderr) == (HAS_TRITON and mesa_llvm), child.stderr
