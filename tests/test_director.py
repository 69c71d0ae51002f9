"""The gallery director against a real engine: a tiny model trained in this process, its real state turned into the
ControlState the live loop publishes, the director's actions applied the way the live loop applies them, and the
clocks (monotonic and wall) driven by the test. The live run through run_installation.py is the soak's short
version (test_soak.py)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from installation.control.actions import Action
from installation.control.director import Director
from installation.control.state import ControlState
from installation.engine import Engine, EngineConfig
from installation.live.hud import hud_text
from installation.models import create_stylegan1
from installation.presets import PresetError, load_preset
from installation.control.director import GalleryConfig
from installation.schedule import parse_hours
from installation.validation import ConfigError

TINY = dict(channels=[32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1)
WEDNESDAY_NOON = datetime(2026, 12, 2, 12, 0)  # a Wednesday


class Rig:
    """A real engine stepped by the test, a director ticked every 0.1 s of a fake monotonic clock."""

    def __init__(self, run_dir: Path, config: GalleryConfig, **engine: object) -> None:
        settings = dict(device="cpu", threads=1, batch=1, probe_size=2, probe_every=1, snapshot_every=2, lr=2e-3)
        self.engine = Engine(create_stylegan1(**TINY), EngineConfig(**{**settings, **engine}), run_dir)
        self.run_dir = run_dir
        self.director = Director(config, run_dir / "director.json", self.engine.journey_iterations)
        self.now, self.wall = 1000.0, WEDNESDAY_NOON
        self.blackout = 0.0  # the level the presenter fades to
        self.actions: list[Action] = []
        self.published = ControlState()  # what the live loop published at the end of the last refresh

    def control_state(self) -> ControlState:
        s = self.engine.state()
        return ControlState(iteration=s.iteration, status=s.status, paused=s.paused, collapsed=s.collapsed,
                            snapshots=s.snapshots, cycle=self.director.cycle, phase=self.director.phase)

    def tick(self) -> None:
        for a in self.director.tick(self.now, self.wall, self.published):
            self.actions.append(a)
            if a.spec.kind == "engine":
                assert self.engine.submit(a.engine_command()), self.engine.errors
            elif a.name == "blackout":
                self.blackout = a.value[0]
        if not self.engine.paused:
            self.engine.step()
        self.published = self.control_state()
        self.now += 0.1
        self.wall += timedelta(seconds=0.1)

    def run_until(self, predicate, what: str, ticks: int = 2000) -> None:
        for _ in range(ticks):
            if predicate():
                return
            self.tick()
        raise AssertionError(f"no {what} after {ticks} ticks: {self.director.state}, {self.published}")

    def events(self) -> list[dict]:
        return [json.loads(line) for line in (self.run_dir / "events.jsonl").read_text().splitlines()]

    def close(self) -> None:
        self.engine.close()


def test_the_journey_lasts_the_engines_arc_unless_the_gallery_sets_its_own_length(tmp_path):
    for max_iterations, expected in ((0, 5), (3, 3)):  # 0: [engine] journey_iterations
        rig = Rig(tmp_path / f"run{max_iterations}", GalleryConfig(cycle="collapse", max_iterations=max_iterations),
                  journey_iterations=5, collapse_fraction=0.0)  # never collapsed: the length alone ends it
        try:
            rig.run_until(lambda: rig.director.phase == "hold", "the hold")
        finally:
            rig.close()
        assert rig.published.iteration == expected


def test_collapse_cycle_runs_to_the_end_holds_fades_resets_and_counts_two_cycles(tmp_path):
    config = GalleryConfig(cycle="collapse", max_iterations=6, hold_seconds=1.0, fade_seconds=0.5)
    rig = Rig(tmp_path / "run", config)
    phases, peaks = [], []
    try:
        while rig.director.cycle < 2:
            rig.tick()
            if not phases or phases[-1] != rig.director.phase:
                phases.append(rig.director.phase)
                if rig.director.phase == "hold":
                    peaks.append(rig.published.iteration)
            assert len(phases) < 20, phases
        rig.run_until(lambda: rig.director.phase == "journey" and rig.published.iteration > 0, "journey again")
    finally:
        rig.close()
    assert phases == ["journey", "hold", "fade_out", "return", "fade_in", "journey", "hold", "fade_out", "return"]
    assert all(peak >= 6 or peak > 0 for peak in peaks) and len(peaks) == 2
    resets = [e for e in rig.events() if e["event"] == "reset"]
    assert len(resets) == 2 and all(e["to"] == 0 for e in resets)
    # the order the audience sees: black before the reset, the picture back only after it
    names = [(a.name, a.value) for a in rig.actions]
    first_reset = names.index(("reset", None))
    assert ("blackout", (1.0, 0.5)) in names[:first_reset]
    assert ("blackout", (0.0, 0.5)) in names[first_reset:]
    assert json.loads((rig.run_dir / "director.json").read_text())["cycle"] == 2
    assert rig.published.cycle == 2 and rig.blackout == 0.0
    assert "cycle 2 journey" in hud_text(rig.published, True, rig.director.describe())


def test_pingpong_walks_back_through_the_snapshots_to_realism_and_forward_again(tmp_path):
    config = GalleryConfig(cycle="pingpong", max_iterations=8, hold_seconds=0.5, step_seconds=0.3)
    rig = Rig(tmp_path / "run", config)
    seen: list[int] = []
    try:
        rig.run_until(lambda: rig.director.phase == "rewind", "rewind")
        snapshots_at_top = rig.published.snapshots
        while rig.director.phase == "rewind":
            assert rig.engine.paused
            if not seen or seen[-1] != rig.published.iteration:  # what the director sees
                seen.append(rig.published.iteration)
            rig.tick()
        rig.run_until(lambda: rig.published.iteration >= 2 and not rig.published.paused, "the journey forward")
    finally:
        rig.close()
    assert seen[-1] == 0 and rig.director.cycle == 1
    assert seen == sorted(seen, reverse=True) and len(seen) >= 3, (seen, snapshots_at_top)
    # back steps, one per snapshot, never a reset
    events = rig.events()
    assert [e for e in events if e["event"] == "reset"] == []
    backs = [e["to"] for e in events if e["event"] == "back"]
    assert backs[-1] == 0 and backs == sorted(backs, reverse=True)


def test_outside_the_hours_black_and_paused_and_at_opening_the_journey_starts_from_realism(tmp_path):
    config = GalleryConfig(cycle="collapse", max_iterations=1000, fade_seconds=0.2, hours="mon-fri 10:00-18:00")
    rig = Rig(tmp_path / "run", config)
    try:
        rig.wall = datetime(2026, 12, 2, 17, 59, 50)  # Wednesday, ten seconds before closing
        rig.run_until(lambda: rig.published.iteration >= 4, "training while open")
        assert rig.blackout == 0.0 and not rig.published.paused
        rig.run_until(lambda: rig.director.phase == "closed", "closing")
        rig.run_until(lambda: rig.published.paused, "a pause")
        closed_at = rig.published.iteration
        for _ in range(30):
            rig.tick()
        assert rig.blackout == 1.0 and rig.published.paused and rig.published.iteration == closed_at > 0
        rig.wall = datetime(2026, 12, 5, 12, 0)  # Saturday: still closed
        for _ in range(10):
            rig.tick()
        assert rig.director.phase == "closed" and rig.blackout == 1.0
        rig.wall = datetime(2026, 12, 7, 9, 59, 59)  # Monday, a second before opening
        rig.run_until(lambda: rig.director.phase != "closed", "opening")
        assert rig.wall.hour == 10
        rig.run_until(lambda: rig.director.phase == "journey", "the journey")
        rig.run_until(lambda: not rig.published.paused, "training again")
    finally:
        rig.close()
    assert rig.blackout == 0.0 and rig.director.cycle == 0
    resets = [e for e in rig.events() if e["event"] == "reset"]
    assert len(resets) == 1 and resets[0]["to"] == 0


def test_loop_travels_between_its_two_iterations(tmp_path):
    config = GalleryConfig(cycle="loop", loop_from=4, loop_to=8, hold_seconds=0.2, fade_seconds=0.2)
    rig = Rig(tmp_path / "run", config)
    try:
        rig.run_until(lambda: rig.director.cycle == 2 and rig.director.phase == "journey", "two loops")
        rig.run_until(lambda: rig.published.iteration > 4, "the journey forward")
    finally:
        rig.close()
    rewinds = [e for e in rig.events() if e["event"] == "rewind"]
    assert [(e["requested"], e["to"]) for e in rewinds] == [(4, 4), (4, 4)]  # snapshot_every 2: 4 is one
    assert [e for e in rig.events() if e["event"] == "reset"] == []


def test_hours_alone_leave_the_journey_to_the_performer_but_close_and_open(tmp_path):
    config = GalleryConfig(hours="10:00-18:00", fade_seconds=0.0)
    rig = Rig(tmp_path / "run", config)
    try:
        rig.wall = datetime(2026, 12, 2, 17, 59, 59)
        rig.run_until(lambda: rig.published.iteration >= 3, "training")
        rig.engine.submit("pause")  # the performer pauses: the director leaves it so while open
        for _ in range(5):
            rig.tick()
        assert rig.published.paused and rig.director.phase == "journey" and not rig.actions
        rig.engine.submit("resume")
        rig.run_until(lambda: rig.director.phase == "closed" and rig.published.paused, "closing")
        rig.wall = datetime(2026, 12, 3, 10, 0)
        rig.run_until(lambda: rig.director.phase == "journey" and not rig.published.paused, "opening")
    finally:
        rig.close()
    assert rig.blackout == 0.0 and len([e for e in rig.events() if e["event"] == "reset"]) == 1


def test_the_cycle_count_and_phase_survive_a_restart(tmp_path):
    config = GalleryConfig(cycle="collapse", max_iterations=4, hold_seconds=30.0, fade_seconds=0.2)
    rig = Rig(tmp_path / "run", config)
    try:
        rig.run_until(lambda: rig.director.cycle == 1 and rig.director.phase == "hold", "the second hold")
    finally:
        rig.close()
    assert json.loads((tmp_path / "run" / "director.json").read_text()) == {"cycle": 1, "phase": "hold", "target": 0}
    # the installation restarts: a new engine resumes the run folder, a new director reads director.json
    again = Rig(tmp_path / "run", config)
    try:
        assert (again.director.cycle, again.director.phase) == (1, "hold")
        again.tick()  # the first refresh publishes the resumed engine's state: it comes up training ...
        again.tick()  # ... and the hold pauses it again
        assert again.engine.paused and again.director.phase == "hold"
        again.now += 31
        again.run_until(lambda: again.director.cycle == 2, "the next cycle")
    finally:
        again.close()
    assert json.loads((tmp_path / "run" / "director.json").read_text())["cycle"] == 2


def test_a_broken_director_file_is_one_line_and_a_fresh_count(tmp_path, caplog):
    path = tmp_path / "director.json"
    path.write_text('{"cycle": "many"')
    director = Director(GalleryConfig(cycle="collapse"), path)
    assert (director.cycle, director.phase) == (0, "off")
    assert any("cannot be read" in r.message and "starting again from cycle 0" in r.message for r in caplog.records)


def test_off_does_nothing_and_writes_nothing(tmp_path):
    director = Director(GalleryConfig(), tmp_path / "director.json")
    assert director.tick(0.0, WEDNESDAY_NOON, ControlState(status="running")) == []
    assert director.describe() is None and not (tmp_path / "director.json").exists()


def test_hours_parser():
    week = parse_hours("mon-fri 10:00-18:00, sat 12:00-16:00")
    assert week.is_open(datetime(2026, 12, 2, 10, 0)) and not week.is_open(datetime(2026, 12, 2, 18, 0))
    assert week.is_open(datetime(2026, 12, 5, 13, 0)) and not week.is_open(datetime(2026, 12, 5, 11, 59))
    assert not week.is_open(datetime(2026, 12, 6, 13, 0))  # Sunday
    overnight = parse_hours("fri 20:00-02:00")
    assert overnight.is_open(datetime(2026, 12, 4, 23, 0)) and overnight.is_open(datetime(2026, 12, 5, 1, 59))
    assert not overnight.is_open(datetime(2026, 12, 5, 23, 0)) and not overnight.is_open(datetime(2026, 12, 4, 1, 0))
    assert parse_hours("sat-mon 00:00-24:00").is_open(datetime(2026, 12, 7, 23, 59))  # wraps over Sunday
    assert parse_hours("").is_open(datetime(2026, 12, 2, 3, 0))
    for text, says in [("10-18", "cannot read '10-18'"), ("mon-fry 10:00-18:00", "unknown day 'fry'"),
                       ("10:00-25:00", "25:00"), ("10:00-10:00", "same time"), ("10:61-12:00", "10:61")]:
        with pytest.raises(ConfigError, match=says) as error:
            parse_hours(text)
        assert "\n" not in str(error.value)


def test_gallery_table_in_presets(tmp_path):
    assert load_preset("gallery").gallery.cycle == "collapse"
    for table, says in [('cycle = "spiral"', "cycle must be one of off, collapse, pingpong, loop"),
                        ('hours = "9-5"', "hours: cannot read '9-5'"),
                        ("loop_from = 50\nloop_to = 20", "loop_to must be above loop_from"),
                        ("hold_seconds = -1", "hold_seconds must be")]:
        path = tmp_path / "bad.toml"
        path.write_text(f"[gallery]\n{table}\n")
        with pytest.raises(PresetError, match=f"bad.toml: \\[gallery\\] {says}"):
            load_preset(path)
