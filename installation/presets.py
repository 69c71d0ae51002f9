"""Presets: TOML files holding every setting of a performance, validated when they are loaded.

A preset has up to nine tables — [model], [engine], [walk], [display], [render], [osc], [record], [logs],
[gallery] — each mapped onto one frozen dataclass. Missing keys take the defaults below; unknown tables or keys,
wrong types and out-of-range values are refused with one line naming the file, the key and what is allowed.
`presets/default.toml` documents every key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine.config import EngineConfig
from .models.gan import PRECISIONS
from .recording.encoder import CODECS
from .resources import data_dir
from .schedule import parse_hours
from .validation import (SIDE_PIXELS, ConfigError, check_choice, check_float, check_int, check_period, check_seed,
                         check_truncation, parse_size)

PRESET_DIR = data_dir("presets")
DISPLAY_MODES = ("fit", "fill", "stretch")


class PresetError(ValueError):
    """A preset cannot be used; the message is one line naming the file, the key and the fix."""


@dataclass(frozen=True)
class ModelConfig:
    checkpoint: str = ""  # empty: the embedded default model
    resolution: int = 0  # 0: the largest the file was trained to
    raw_generator: bool = False  # the raw generator instead of its moving average

    def __post_init__(self) -> None:
        if self.resolution and (self.resolution < 4 or self.resolution & (self.resolution - 1)):
            raise ConfigError(f"resolution must be 0 or a power of two >= 4, got {self.resolution!r}")


@dataclass(frozen=True)
class WalkConfig:
    keyframes: int = 6  # keyframes per loop
    period: float = 30.0  # seconds per loop
    truncation: float = 0.7  # 1 = none
    seed: int = 0
    grid: int = 3  # N for the N x N population view

    def __post_init__(self) -> None:
        check_int("keyframes", self.keyframes, 2, 256)
        check_period(self.period)
        check_truncation(self.truncation)
        check_seed(self.seed)
        check_int("grid", self.grid, 1, 8)


@dataclass(frozen=True)
class DisplayConfig:
    fullscreen: bool = True
    monitor: str = ""  # index ("1"; a TOML number is read as one) or name; empty: the primary monitor
    width: int = 1920  # windowed and headless size; full-screen uses the monitor's mode
    height: int = 1080
    mode: str = "fit"  # fit (letterbox) | fill (crop) | stretch
    letterbox: tuple[float, float, float] = (0.0, 0.0, 0.0)  # RGB 0..1
    crossfade: float = -1.0  # 0 cuts from frame to frame; -1 (or up to 10) blends the frames around the present
    show_grid: bool = False
    hud: bool = False
    keys: bool = True  # development keys; switch off for gallery use
    fps: float = 30.0  # headless output frame rate

    def __post_init__(self) -> None:
        check_int("width", self.width, *SIDE_PIXELS)
        check_int("height", self.height, *SIDE_PIXELS)
        check_choice("mode", self.mode, DISPLAY_MODES)
        if len(self.letterbox) != 3:
            raise ConfigError(f"letterbox must be three numbers 0..1 (RGB), got {list(self.letterbox)!r}")
        for value in self.letterbox:
            check_float("letterbox", value, 0.0, 1.0)
        if self.crossfade != -1.0 and not (isinstance(self.crossfade, (int, float))
                                           and not isinstance(self.crossfade, bool) and 0 <= self.crossfade <= 10):
            raise ConfigError(f"crossfade must be -1 (follow the generator's frame interval) or 0..10 seconds "
                              f"(0 cuts), got {self.crossfade!r}")
        check_float("fps", self.fps, 1.0, 240.0)


@dataclass(frozen=True)
class RenderConfig:
    share: float = 0.5  # share of the engine process's time spent drawing frames rather than training
    max_fps: float = 30.0  # most generator frames per second
    precision: str = "fp32"  # display frames only (models.gan.PRECISIONS); training stays fp32

    def __post_init__(self) -> None:
        check_float("share", self.share, 0.0, 0.95, low_open=True)
        check_float("max_fps", self.max_fps, 1.0, 240.0)
        check_choice("precision", self.precision, PRECISIONS)


DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


def parse_target(text: str) -> tuple[str, int]:
    """'host:port' (or '[v6 address]:port') -> (host, port); ConfigError names the entry."""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"feedback entries must be \"host:port\" with a port 1..65535, got {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class OscConfig:
    """The OSC server ([osc] table): where it listens, whom it answers and whom it accepts."""

    enabled: bool = True
    host: str = "0.0.0.0"  # bind address; 0.0.0.0 = every interface (a tablet on the LAN can reach it)
    port: int = 8000  # TouchOSC's default outgoing port; 0 = any free port (printed at start)
    reply_port: int = 0  # 0 = reply to the sender's source address and port; N = the sender's IP at port N
    feedback: tuple[str, ...] = ()  # "host:port" targets that always receive state
    allow: tuple[str, ...] = DEFAULT_ALLOW  # CIDR networks whose datagrams are accepted
    state_every: float = 1.0  # seconds between state broadcasts; 0 = only on change and on request
    oscquery_port: int = 0  # HTTP port of the OSCQuery tree; 0 = off

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ConfigError(f"host must be an IP address to listen on (0.0.0.0 = all, 127.0.0.1 = this machine "
                              f"only), got {self.host!r}") from None
        check_int("port", self.port, 0, 65535)
        check_int("reply_port", self.reply_port, 0, 65535)
        check_int("oscquery_port", self.oscquery_port, 0, 65535)
        for entry in self.feedback:
            if not isinstance(entry, str):
                raise ConfigError(f"feedback entries must be \"host:port\" strings, got {entry!r}")
            parse_target(entry)
        for entry in self.allow:
            try:
                ipaddress.ip_network(entry, strict=False)
            except (TypeError, ValueError):
                raise ConfigError(f"allow entries must be networks like \"192.168.1.0/24\" or addresses, "
                                  f"got {entry!r}") from None
        check_float("state_every", self.state_every, 0.0, 3600.0)


def check_codec(value: object) -> str:
    """A video codec name: the one rule for the [record] table and /uncanny/record/start."""
    return check_choice("codec", value, CODECS)


def record_size(text: str) -> tuple[int, int] | None:
    """A recording's "WIDTHxHEIGHT"; None for "" or "0x0" (the output's own size)."""
    if text in ("", "0x0"):
        return None
    size = parse_size(text)
    if size is None:
        low, high = SIDE_PIXELS
        raise ConfigError(f"size must be \"WIDTHxHEIGHT\" ({low} to {high} each, e.g. \"1280x720\") or \"\" for "
                          f"the output's size, got {text!r}")
    return size


@dataclass(frozen=True)
class RecordConfig:
    """Live recordings of the presented picture ([record] table; started by key v or /uncanny/record/start)."""

    codec: str = "h264"  # the default codec; /uncanny/record/start may name another
    size: str = ""  # "WIDTHxHEIGHT"; "" or "0x0" = the output's size
    fps: float = 30.0  # the file's constant frame rate; the display's frames are repeated or skipped to hold it
    quality: int = 18  # H.264 constant rate factor, 0 (lossless) .. 51; lower = better and larger
    max_minutes: float = 60.0  # a recording stops itself after this long; 0 = no limit
    folder: str = "recordings"  # relative to the run folder, or an absolute path
    hud: bool = False  # record the HUD too (never the red recording dot)

    def __post_init__(self) -> None:
        check_codec(self.codec)
        record_size(self.size)
        check_float("fps", self.fps, 1.0, 240.0)
        check_int("quality", self.quality, 0, 51)
        check_float("max_minutes", self.max_minutes, 0.0, 7 * 24 * 60.0)
        if not self.folder.strip():
            raise ConfigError("folder must name a folder (e.g. \"recordings\", under the run folder)")

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the file, None for the output's own size."""
        return record_size(self.size)


@dataclass(frozen=True)
class LogsConfig:
    """What the display process leaves for remote checks ([logs] table): status.json, the log, thumbnails."""

    status_every: float = 5.0  # seconds between rewrites of status.json
    log_mb: float = 10.0  # logs/uncanny.log rotates at this size ...
    log_files: int = 5  # ... keeping this many older files
    thumbnail_minutes: float = 10.0  # a thumbnail of the output this often; 0 = none
    thumbnail_width: int = 320
    thumbnail_budget_mb: float = 50.0  # the oldest thumbnails go to stay within this

    def __post_init__(self) -> None:
        check_float("status_every", self.status_every, 0.1, 3600.0)
        check_float("log_mb", self.log_mb, 0.01, 10000.0)
        check_int("log_files", self.log_files, 1, 100)
        check_float("thumbnail_minutes", self.thumbnail_minutes, 0.0, 1440.0)
        check_int("thumbnail_width", self.thumbnail_width, 16, 1920)
        check_float("thumbnail_budget_mb", self.thumbnail_budget_mb, 0.0, 100000.0, low_open=True)
CYCLES = ("off", "collapse", "pingpong", "loop")


@dataclass(frozen=True)
class GalleryConfig:
    """The gallery director ([gallery] table, control/director.py): the journey cycling on its own, opening hours."""

    cycle: str = "off"  # off | collapse | pingpong | loop
    max_iterations: int = 3000  # collapse, pingpong: the journey ends here if the collapse flag has not come
    hold_seconds: float = 60.0  # the end of the journey stays on screen (training paused) this long
    fade_seconds: float = 5.0  # fades to black and back
    step_seconds: float = 2.0  # pingpong: seconds per snapshot on the way back to realism
    loop_from: int = 0  # loop: the journey travels from this iteration ...
    loop_to: int = 1000  # ... to this one, again and again
    hours: str = ""  # opening hours, e.g. "mon-fri 10:00-18:00, sat 12:00-16:00"; empty = always open

    def __post_init__(self) -> None:
        check_choice("cycle", self.cycle, CYCLES)
        check_int("max_iterations", self.max_iterations, 1)
        check_float("hold_seconds", self.hold_seconds, 0.0, 86400.0)
        check_float("fade_seconds", self.fade_seconds, 0.0, 600.0)
        check_float("step_seconds", self.step_seconds, 0.0, 3600.0)
        check_int("loop_from", self.loop_from, 0)
        check_int("loop_to", self.loop_to, 1)
        if self.loop_to <= self.loop_from:
            raise ConfigError(f"loop_to must be above loop_from ({self.loop_from}), got {self.loop_to}")
        parse_hours(self.hours)

    @property
    def active(self) -> bool:
        """Whether the director has anything to do: a cycle, or opening hours to keep."""
        return self.cycle != "off" or bool(self.hours.strip())


@dataclass(frozen=True)
class Preset:
    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    walk: WalkConfig = field(default_factory=WalkConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    osc: OscConfig = field(default_factory=OscConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    logs: LogsConfig = field(default_factory=LogsConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    source: str = "built-in defaults"

    def replace(self, section: str, **changes: Any) -> Preset:
        """A copy with some settings of one table changed (command-line flags override the file)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        try:
            return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})
        except ConfigError as error:
            raise PresetError(f"{section}: {error}") from None


_CLASSES = {"model": ModelConfig, "engine": EngineConfig, "walk": WalkConfig, "display": DisplayConfig,
            "render": RenderConfig, "osc": OscConfig, "record": RecordConfig, "logs": LogsConfig,
            "gallery": GalleryConfig}


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


def load_preset(name_or_path: str | Path) -> Preset:
    """A preset by file path, or by name from presets/ (`default` = presets/default.toml)."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))
        raise PresetError(f"preset {str(name_or_path)!r} not found; give a .toml file or one of: {names}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PresetError(f"{path}: not valid TOML ({error})") from None
    built: dict[str, Any] = {}
    for section, table in data.items():
        if section not in _CLASSES:
            raise PresetError(f"{path}: unknown table [{section}]; known tables: {', '.join(_CLASSES)}")
        if not isinstance(table, dict):
            raise PresetError(f"{path}: {section} must be a table ([{section}]), got {table!r}")
        try:
            built[section] = _build(_CLASSES[section], table)
        except (ConfigError, TypeError) as error:
            raise PresetError(f"{path}: [{section}] {error}") from None
    return Preset(**built, source=str(path))
