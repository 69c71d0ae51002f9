"""The package's shape (docs: ../README.md "Layout"): layers that import only downwards, no import cycles between
modules or packages (a newcomer can read it bottom-up), and one place where the actions are defined."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "installation"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every installation module this file imports, at the top or inside functions (a lazy import is still a
    dependency); not those under `if TYPE_CHECKING:`, which name types for annotations and load nothing."""
    name, found = module_name(path), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c.startswith("installation") and c != name)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports(path) if m in modules} for name, path in modules.items()}


def test_no_module_imports_itself_back_through_others():
    edges = graph()
    for start in edges:
        seen, stack = set(), [(start, (start,))]
        while stack:
            node, path = stack.pop()
            for nxt in edges[node]:
                if start.startswith(nxt + ".") or nxt.startswith(start + "."):
                    continue  # a package and its own modules (the package's __init__ re-exports them)
                assert nxt != start, f"import cycle: {' -> '.join(path + (nxt,))}"
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + (nxt,)))


# The layers, lowest first: a module may import its own layer and those below, never one above. Command modules
# (`cli.py` in any package: they add subcommands to the main parser) belong to the entry layer wherever they live.
LAYERS = {
    1: ("installation", "frames", "storage", "validation", "messages", "signals", "resources", "images", "journal",
        "schedule", "exits"),
    2: ("engine", "models", "display", "walks", "journey", "training"),
    3: ("control", "outputs", "exports", "recording"),
    4: ("live",),
    5: ("cli", "service", "__main__", "arguments", "presets"),  # presets assemble every layer's *Config
}
EDGES = LAYERS[3]  # their packages reach a sibling only through its package (its __init__) or its config module


def unit(module: str) -> str:
    """The top-level piece of the package a module belongs to: "engine" for installation.engine.process; "cli" for
    every command module."""
    parts = module.split(".")
    return "cli" if parts[-1] == "cli" else parts[1] if len(parts) > 1 else parts[0]


def layer(module: str) -> int:
    found = [number for number, units in LAYERS.items() if unit(module) in units]
    assert found, f"{module} is in no layer: add {unit(module)!r} to LAYERS (and to README's Layout)"
    return found[0]


def test_layers_import_only_downwards():
    wrong = [f"{source} (layer {layer(source)}) imports {target} (layer {layer(target)})"
             for source, targets in graph().items() for target in targets if layer(target) > layer(source)]
    assert not wrong, "upward imports:\n" + "\n".join(sorted(wrong))


def test_edges_reach_each_other_through_named_interfaces():
    wrong = []
    for source, targets in graph().items():
        for target in targets:
            if unit(source) != unit(target) and unit(source) in EDGES and unit(target) in EDGES:
                interface = (f"installation.{unit(target)}", f"installation.{unit(target)}.config")
                if target not in interface:
                    wrong.append(f"{source} imports {target}; use {interface[0]} (its __init__) or its config")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_package_imports_itself_back_through_others():
    """Modules may be acyclic while their packages are not (presets -> recording -> presets): one level up too."""
    edges: dict[str, set[str]] = {}
    for source, targets in graph().items():
        edges.setdefault(unit(source), set()).update(unit(t) for t in targets if unit(t) != unit(source))
    edges.pop("installation", None)  # the root package's __init__ is imported by every module
    for start in edges:
        seen, stack = set(), [(start, (start,))]
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                assert nxt != start, f"package import cycle: {' -> '.join(path + (nxt,))}"
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + (nxt,)))


def test_actions_are_defined_in_one_place():
    defining = [p for p in PACKAGE.rglob("*.py") if "SPECS: tuple[Spec, ...]" in p.read_text()]
    assert [p.relative_to(PACKAGE).as_posix() for p in defining] == ["control/actions.py"]


def test_each_display_action_registers_its_effect_beside_its_spec():
    from installation.control.actions import SPECS

    assert [s.name for s in SPECS if (s.kind == "display") != (s.effect is not None)] == []


@pytest.mark.parametrize("command", [["--help"], ["osc", "/uncanny/ping", "--wait", "0"],
                                     ["service", "status", "--run-dir", "{tmp}"],
                                     ["service", "install", "--user", "--print"], ["monitors"]],
                         ids=["help", "osc", "service status", "service install", "monitors"])
def test_commands_that_draw_nothing_load_neither_torch_nor_triton(tmp_path, command):
    """A technician's and a monitor's commands start in a fraction of a second: torch (seconds under load) and triton
    stay unloaded (benchmarks/bench_start.py times them). Their outcome does not matter here."""
    done = subprocess.run([sys.executable, "-X", "importtime", str(PACKAGE.parent / "run_installation.py"),
                           *[word.format(tmp=tmp_path) for word in command]], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path,
                          env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "DISPLAY": ""})
    loaded = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert loaded and not loaded & {"torch", "triton"}, done.stderr[-2000:]
