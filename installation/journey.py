"""Headless journey: the inverted fine-tuning with no display, then a contact sheet and a plot of how it went.

DIR holds the engine's run folder (run.json, metrics.jsonl, events.jsonl, snapshots/) plus:

    columns/itNNNNNNNN.png   the fixed rows at one iteration (a vertical strip), written as the run passes it
    contact_sheet.png        the strips side by side: rows = fixed latents, columns = iterations 0, every, 2*every,
                             ... and the last one (the layout of the paper's Figure 2); tiles at most 256 px
    journey.png              probe D score, loss and probe diversity (1 - MS-SSIM) against iteration

Running the same command on the same DIR resumes the run up to --iterations, with its own seed and live settings
except the --lr, --loss and --batch given again, which apply from the resumed iteration on.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from collections.abc import Mapping
from typing import IO, Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .engine import Engine, EngineConfig
from .engine.engine import derive_seed, fixed_latents
from .engine.errors import RunFolderUnavailable
from .engine.runfolder import LIVE_LOCK, RunFolder
from .engine.state import EngineState
from .images import grid, save_png, to_uint8
from .journal import history
from .models import GAN

ROW_STREAM = 3  # seed stream of the contact-sheet rows (the probe and the training batches use 1 and 2)
TILE_MAX = 256
MAX_COLUMNS = 64
PAD = 2
HEADER = 14
_LIVE_SETTINGS = {"lr": "lr", "loss": "loss_name", "batch": "batch"}  # engine command -> Engine attribute


class JourneyError(Exception):
    """The journey could not finish (repeated non-finite rollbacks); one line."""


class JourneyRequestError(ValueError):
    """What was asked does not fit the run folder (it is already past --iterations); one line naming the fix."""


def journey_columns(iterations: int, every: int) -> list[int]:
    """0, every, 2*every, ... up to `iterations`, which is always the last column."""
    columns = list(range(0, iterations + 1, every))
    return columns if columns[-1] == iterations else columns + [iterations]


class ColumnRenderer:
    """The between-steps hook of a journey: renders the fixed rows whenever the run reaches a column's iteration."""

    def __init__(self, folder: Path, columns: list[int], rows: int) -> None:
        self.folder, self.columns, self.rows = folder, set(columns), rows
        self._rendered: dict[int, int] = {}  # iteration -> branch (a rollback that passes it again re-renders)
        self._latents: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    def path(self, iteration: int) -> Path:
        return self.folder / f"it{iteration:08d}.png"

    def __call__(self, engine: Engine) -> None:
        it = engine.iteration
        if it not in self.columns or self._rendered.get(it) == engine.branch:
            return
        if self._latents is None:  # one seed per row: a resumed run with another --rows keeps the same faces
            rows = [fixed_latents(engine.gan, 1, derive_seed(engine.seed, ROW_STREAM, r)) for r in range(self.rows)]
            noise = [torch.cat(level) for level in zip(*(n for _, n in rows))]
            self._latents = (torch.cat([z for z, _ in rows]), noise)
        with torch.no_grad():
            tiles = _tiles(to_uint8(engine.gan.generate(*self._latents)))
        save_png(self.path(it), np.concatenate(list(tiles), axis=0))
        self._rendered[it] = engine.branch


def _tiles(images: np.ndarray) -> np.ndarray:
    """Shrink (B, R, R, 3) images to at most TILE_MAX px so a 1024 px sheet stays a reasonable picture."""
    if images.shape[1] <= TILE_MAX:
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((TILE_MAX, TILE_MAX), Image.LANCZOS)) for im in images])


def write_contact_sheet(renderer: ColumnRenderer, columns: list[int], path: Path) -> int:
    """Assemble the strips that exist into one sheet with iteration labels; returns the number of columns."""
    strips = [(it, np.asarray(Image.open(renderer.path(it)).convert("RGB"))) for it in columns
              if renderer.path(it).exists()]
    if not strips:
        return 0
    tile = strips[0][1].shape[1]
    rows = min(strip.shape[0] // tile for _, strip in strips)  # strips of a resumed run may have other --rows
    per_column = [strip[:rows * tile].reshape(rows, tile, tile, 3) for _, strip in strips]
    tiles = np.stack([per_column[c][r] for r in range(rows) for c in range(len(strips))])
    body = grid(tiles, columns=len(strips), pad=PAD)
    sheet = Image.new("RGB", (body.shape[1], body.shape[0] + HEADER))
    sheet.paste(Image.fromarray(body), (0, HEADER))
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for c, (it, _) in enumerate(strips):
        draw.text((PAD + c * (tile + PAD) + 2, 2), str(it), fill=(255, 255, 255), font=font)
    save_png(path, np.asarray(sheet))
    return len(strips)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl as the journey stands (journal.history: a rewind, rollback or resume from an older snapshot
    replaces the future it abandoned); an unfinished last line from a kill is skipped."""
    lines = []
    if path.exists():
        for text in path.read_text(encoding="utf-8").splitlines():
            try:
                line = json.loads(text)
                line["iteration"] = int(line["iteration"])
                lines.append(line)
            except (ValueError, KeyError, TypeError):
                continue
    return history(lines)


def plot_journey(metrics: list[dict[str, Any]], path: Path, collapse_line: float | None = None,
                 size: tuple[int, int] = (960, 720)) -> None:
    """Three stacked panels against iteration, drawn with Pillow (no plotting library needed)."""
    panels = [("D score of the probe batch (mean logit; lower = more fake)", "probe_d", (90, 160, 255)),
              ("loss", "loss", (255, 140, 60)),
              ("diversity of the probe batch, 1 - MS-SSIM (collapse below the dashed line)", "diversity",
               (110, 220, 120))]
    width, height = size
    image = Image.new("RGB", size, (18, 18, 22))
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    left, right, top, gap = 80, 20, 10, 34
    panel_h = (height - top - gap * len(panels)) // len(panels)
    last = max((m["iteration"] for m in metrics), default=1) or 1
    for i, (title, key, colour) in enumerate(panels):
        y0 = top + i * (panel_h + gap) + 16
        y1 = y0 + panel_h - 16
        points = [(m["iteration"], m[key]) for m in metrics if isinstance(m.get(key), (int, float))]
        extra = [collapse_line] if key == "diversity" and collapse_line is not None else []
        values = [v for _, v in points] + extra
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        if high - low < 1e-12:
            low, high = low - max(abs(low) * 0.1, 1e-3), high + max(abs(high) * 0.1, 1e-3)

        def xy(it: float, v: float) -> tuple[float, float]:
            return left + (width - left - right) * it / last, y1 - (y1 - y0) * (v - low) / (high - low)

        draw.text((left, y0 - 15), title, fill=(230, 230, 230), font=font)
        draw.rectangle((left, y0, width - right, y1), outline=(90, 90, 100))
        draw.text((4, y0), f"{high:.4g}", fill=(200, 200, 200), font=font)
        draw.text((4, y1 - 10), f"{low:.4g}", fill=(200, 200, 200), font=font)
        if low < 0 < high:
            draw.line((xy(0, 0), xy(last, 0)), fill=(60, 60, 70))
        if extra:
            y = xy(0, collapse_line)[1]
            for x in range(left, width - right, 12):
                draw.line((x, y, min(x + 6, width - right), y), fill=(200, 80, 80))
        if len(points) == 1:
            x, y = xy(*points[0])
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        elif points:
            draw.line([xy(it, v) for it, v in points], fill=colour, width=2)
        draw.text((left, y1 + 3), "0", fill=(200, 200, 200), font=font)
        draw.text((width - right - 60, y1 + 3), f"iteration {last}", fill=(200, 200, 200), font=font)
    save_png(path, np.asarray(image))


class Progress:
    """A plain stderr progress line: redrawn in place on a terminal, one line per 10 % otherwise."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total, self.stream = total, stream
        self.tty = stream.isatty()
        self._last_draw = 0.0
        self._last_tenth = -1
        self._start: tuple[float, int] | None = None

    def __call__(self, state: EngineState) -> None:
        it, now = state.iteration, time.monotonic()
        if self._start is None:
            self._start = (now, it)
        tenth = 10 * it // max(self.total, 1)
        if self.tty and now - self._last_draw < 0.1 and it < self.total:
            return
        if not self.tty and tenth == self._last_tenth:
            return
        self._last_draw, self._last_tenth = now, tenth
        done = min(it / max(self.total, 1), 1.0)
        bar = "#" * round(20 * done) + "." * (20 - round(20 * done))
        elapsed, first = now - self._start[0], self._start[1]
        rate = (it - first) / elapsed if elapsed > 0 else 0.0
        eta = f"{(self.total - it) / rate:.0f}s" if rate > 0 and it < self.total else "-"
        numbers = "  ".join(f"{name} {value:.4g}" for name, value in
                            (("loss", state.loss), ("D", state.probe_d), ("diversity", state.diversity))
                            if isinstance(value, (int, float)))
        line = f"journey {it:>6}/{self.total} [{bar}] {100 * done:5.1f}%  {rate:6.1f} it/s  {numbers}  ETA {eta}"
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def run_journey(gan: GAN, out: Path, config: EngineConfig, iterations: int, every: int, rows: int = 4,
                stream: IO[str] = sys.stderr, asked: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune `gan` for `iterations` steps with no display, writing everything into `out`; returns a summary.

    A run already in `out` resumes with its own seed and live settings, except those in `asked` (lr, loss, batch
    given on the command line): the user meant them, so they are applied as engine commands from the resumed
    iteration on, as a performer would change them live. The summary's `applied` lists them with the old values.
    """
    columns = journey_columns(iterations, every)
    if len(columns) > MAX_COLUMNS:
        raise ValueError(f"{len(columns)} contact-sheet columns; raise `every` to keep at most {MAX_COLUMNS}")
    if RunFolder(out).held_elsewhere(LIVE_LOCK):  # its engine restarts between our steps and would find ours
        raise RunFolderUnavailable(f"run folder {out}: an installation is running on it; stop it or choose another "
                                   "--out")
    renderer = ColumnRenderer(out / "columns", columns, rows)
    resuming = (out / "run.json").is_file()
    engine = Engine(gan, config, out, between_steps=renderer)
    start = engine.iteration
    if start > iterations:
        engine.close(snapshot=False)
        raise JourneyRequestError(f"{out} is already at iteration {start}, past --iterations {iterations}; ask for "
                                  f"more than {start} to go on, or pick another --out")
    applied = []
    if resuming:
        for name, value in (asked or {}).items():
            before = getattr(engine, _LIVE_SETTINGS[name])
            engine.apply((name, value))
            if (after := getattr(engine, _LIVE_SETTINGS[name])) != before:
                applied.append((name, before, after))
    progress = Progress(iterations, stream)
    try:
        engine.run(publish=progress, until=iterations)
    except BaseException:
        engine.close(snapshot=False)  # interrupted mid-step: the weights may not match the iteration count
        raise
    finally:
        progress.finish()
    engine.close()
    metrics = read_metrics(out / "metrics.jsonl")
    written = write_contact_sheet(renderer, [c for c in columns if c <= engine.iteration], out / "contact_sheet.png")
    threshold = config.collapse_fraction * engine.diversity0 if engine.diversity0 is not None else None
    plot_journey(metrics, out / "journey.png", threshold)
    if engine.failure:
        raise JourneyError(f"stopped at iteration {engine.iteration}: {engine.failure}")
    probes = [m for m in metrics if m.get("probe_d") is not None]
    return {
        "resumed_from": start or None, "iteration": engine.iteration, "columns": written, "rows": rows,
        "probe_d": (probes[0]["probe_d"], probes[-1]["probe_d"]) if probes else (math.nan, math.nan),
        "diversity": (probes[0]["diversity"], probes[-1]["diversity"]) if probes else (math.nan, math.nan),
        "rollbacks": engine.rollbacks, "collapsed": engine.collapsed, "lr": engine.lr, "applied": applied,
    }
