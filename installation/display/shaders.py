"""GLSL programs loaded from plain files in shaders/, with compile errors that name the file and line."""

from __future__ import annotations

import re
from pathlib import Path

import moderngl

from ..resources import data_dir

SHADER_DIR = data_dir("shaders")

# Driver log lines: Mesa "0:42(5): error: ...", NVIDIA "0(42) : error C0000: ...", AMD/Intel "ERROR: 0:42: ...".
_LOG_LINES = (
    re.compile(r"^\d+:(?P<line>\d+)\(\d+\): (?P<text>.*)$"),
    re.compile(r"^\d+\((?P<line>\d+)\) : (?P<text>.*)$"),
    re.compile(r"^(?P<severity>ERROR|WARNING): \d+:(?P<line>\d+): (?P<text>.*)$"),
)


class ShaderError(RuntimeError):
    """A shader failed to compile or link; the message has one `file:line: text` entry per driver complaint."""


def load_program(ctx: moderngl.Context, vertex: str, fragment: str, directory: Path = SHADER_DIR) -> moderngl.Program:
    """Compile and link `directory/vertex` and `directory/fragment` (file names, or paths relative to it)."""
    files = {"vertex_shader": Path(directory) / vertex, "fragment_shader": Path(directory) / fragment}
    sources = {stage: path.read_text() for stage, path in files.items()}
    try:
        return ctx.program(**sources)
    except moderngl.Error as error:
        raise ShaderError(describe_log(str(error), files)) from None


def describe_log(log: str, files: dict[str, Path]) -> str:
    """Rewrite moderngl's error text (a header per stage, then the driver log) into `file:line: text` lines."""
    stage, entries = None, []
    for raw in log.splitlines():
        line = raw.strip()
        if line in files or line == "Program":  # moderngl's section headers: a stage name, or the linker's
            stage = line
        elif line and not line.startswith("GLSL ") and set(line) != {"="}:
            entries.append(_locate(line, files.get(stage)) if stage in files else
                           f"{' + '.join(map(_display, files.values()))}: link {line}")
    return "\n".join(entries) or log


def _locate(line: str, path: Path) -> str:
    for pattern in _LOG_LINES:
        if match := pattern.match(line):
            severity = match.groupdict().get("severity")
            text = f"{severity.lower()}: {match['text']}" if severity else match["text"]
            return f"{_display(path)}:{match['line']}: {text}"
    return f"{_display(path)}: {line}"


def _display(path: Path) -> str:
    """The shipped shaders as shaders/present.frag, others in full."""
    path = path.resolve()
    return f"shaders/{path.relative_to(SHADER_DIR)}" if path.is_relative_to(SHADER_DIR) else str(path)
