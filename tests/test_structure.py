"""The package's shape: no import cycles between its modules (a newcomer can read it bottom-up), and one place
where the actions are defined."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "installation"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every installation module this file imports, at the top or inside functions (a lazy import is still a
    dependency)."""
    name, found = module_name(path), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
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


def test_actions_are_defined_in_one_place():
    defining = [p for p in PACKAGE.rglob("*.py") if "SPECS: tuple[Spec, ...]" in p.read_text()]
    assert [p.relative_to(PACKAGE).as_posix() for p in defining] == ["control/actions.py"]
