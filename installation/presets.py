"""Presets: TOML files holding every setting of a performance, validated when they are loaded.

A preset has up to eleven tables — [model], [engine], [walk], [display], [render], [osc], [http], [record],
[logs], [gallery], [midi] — and the [[output]] array; each maps onto one frozen dataclass that lives beside the
part it configures (engine/config.py, control/config.py, ...); this module only reads the TOML and assembles them.
Missing keys take those defaults; unknown tables or keys, wrong types and out-of-range values are refused with one
line naming the file, the key and what is allowed.
`presets/default.toml` documents every key.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .control.config import HttpConfig, OscConfig
from .control.director import GalleryConfig
from .control.midi import MidiConfig
from .display.config import DisplayConfig
from .engine.config import EngineConfig, RenderConfig, WalkConfig
from .exits import BadInput
from .live.status import LogsConfig
from .models.config import ModelConfig
from .outputs import KINDS as OUTPUT_KINDS
from .recording.config import RecordConfig
from .resources import data_dir
from .validation import ConfigError

PRESET_DIR = data_dir("presets")


class PresetError(BadInput, ValueError):
    """A preset cannot be used; the message is one line naming the file, the key and the fix."""


@dataclass(frozen=True)
class Preset:
    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    walk: WalkConfig = field(default_factory=WalkConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    osc: OscConfig = field(default_factory=OscConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    logs: LogsConfig = field(default_factory=LogsConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    midi: MidiConfig = field(default_factory=MidiConfig)
    outputs: tuple[Any, ...] = ()  # the [[output]] tables: one config per output (outputs/), in order
    source: str = "built-in defaults"

    def replace(self, section: str, **changes: Any) -> Preset:
        """A copy with some settings of one table changed (command-line flags override the file)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        try:
            return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})
        except ConfigError as error:
            raise PresetError(f"{section}: {error}") from None


_CLASSES = {"model": ModelConfig, "engine": EngineConfig, "walk": WalkConfig, "display": DisplayConfig,
            "render": RenderConfig, "osc": OscConfig, "http": HttpConfig, "record": RecordConfig, "logs": LogsConfig,
            "gallery": GalleryConfig, "midi": MidiConfig}


_TYPE_NAMES = {int: "a whole number", float: "a number", bool: "true or false", str: "a string", tuple: "a list"}


def _build(cls: type, table: dict[str, Any]) -> Any:
    """One dataclass from one TOML table: names and types are checked against the defaults, ranges by the class."""
    defaults = cls()
    known = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"unknown key {key!r}; known keys: {', '.join(sorted(known))}")
        default = getattr(defaults, key)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif cls is DisplayConfig and key == "monitor" and type(value) is int:  # monitor = 1: an index
            if value < 0:
                raise ConfigError(f"monitor must be an index (0, 1, ...) or part of a monitor's name, got {value}")
            value = str(value)
        if type(value) is not type(default):
            raise ConfigError(f"{key} must be {_TYPE_NAMES[type(default)]}, got {value!r}")
        values[key] = value
    return cls(**values)


def _outputs(tables: Any) -> tuple[Any, ...]:
    """The [[output]] array of tables: each one's `kind` picks its config class (outputs.KINDS)."""
    if not isinstance(tables, list):
        raise ConfigError("output must be an array of tables, each starting with [[output]]")
    built, labels = [], set()
    for number, table in enumerate(tables, 1):
        where = f"[[output]] #{number}"
        kind = table.get("kind") if isinstance(table, dict) else None
        if kind not in OUTPUT_KINDS:
            raise ConfigError(f"{where}: kind must be one of {', '.join(OUTPUT_KINDS)}, got {kind!r}")
        try:
            config = _build(OUTPUT_KINDS[kind][0], table)
        except (ConfigError, TypeError) as error:
            raise ConfigError(f"{where} ({kind}): {error}") from None
        if config.label in labels:
            raise ConfigError(f"{where} ({kind}): a second output {config.label}; give each its own name, url or "
                              "monitor")
        labels.add(config.label)
        built.append(config)
    return tuple(built)


def load_preset(name_or_path: str | Path) -> Preset:
    """A preset by file path, or by name from presets/ (`default` = presets/default.toml)."""
    path = Path(name_or_path)
    if not path.suffix and not os.path.lexists(path):
        path = PRESET_DIR / f"{name_or_path}.toml"
    names = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))
    try:
        if path.is_dir():
            raise PresetError(f"preset {str(name_or_path)!r} is a folder, not a preset file; give a .toml file (or "
                              f"one of: {names})")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PresetError(f"preset {str(name_or_path)!r} not found; give a .toml file or one of: {names}") from None
    except OSError as error:  # a loop of symbolic links, no permission, a disk error
        what = "is a loop of symbolic links" if error.errno == errno.ELOOP else \
            f"cannot be read ({error.strerror or error})"
        raise PresetError(f"preset {str(name_or_path)!r} {what}; give a .toml file (or one of: {names})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PresetError(f"{path}: not valid TOML ({error})") from None
    built: dict[str, Any] = {}
    for section, table in data.items():
        if section == "output":
            try:
                built["outputs"] = _outputs(table)
            except (ConfigError, TypeError) as error:
                raise PresetError(f"{path}: {error}") from None
            continue
        if section not in _CLASSES:
            raise PresetError(f"{path}: unknown table [{section}]; known tables: {', '.join(_CLASSES)}, "
                              "[[output]]")
        if not isinstance(table, dict):
            raise PresetError(f"{path}: {section} must be a table ([{section}]), got {table!r}")
        try:
            built[section] = _build(_CLASSES[section], table)
        except (ConfigError, TypeError) as error:
            raise PresetError(f"{path}: [{section}] {error}") from None
    return Preset(**built, source=str(path))
