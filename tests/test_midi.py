"""MIDI controllers through a real MIDI system: a private JACK server (dummy backend), python-rtmidi clients as the
controller and as its LEDs, the installation's MidiController reading real ports; learn over real OSC (UDP).

Messages from one port arrive in order and are handled one at a time, so once the action of a later message is
in the inbox, every earlier message has been handled: the waits below are exact, with generous deadlines.
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from installation.control.actions import BY_NAME, SPECS, Action, action
from installation.control.config import OscConfig
from installation.control.inbox import Inbox
from installation.control.midi import FILE_NAME, MidiConfig, MidiController, knob_position, knob_value, \
    parse_mapping
from installation.control.osc import OscServer
from installation.control.state import ControlState
from installation.presets import PresetError, load_preset
from installation.validation import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from jack_midi import Controller, Lights, jack_server, unique, until  # noqa: E402
from osc_client import Client  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRUNCATION = BY_NAME["walk_truncation"].args[0]


@pytest.fixture
def jack() -> Iterator[str]:
    pytest.importorskip("rtmidi", reason="the [midi] extra: pip install -e '.[midi]'")
    with jack_server() as name:
        yield name


class Show:
    """The live loop's part, as live/run.py does it: drain the inbox once per refresh, show each action to the
    MIDI controller (observe), keep it, publish the state."""

    def __init__(self, midi: MidiController, inbox: Inbox) -> None:
        self.midi, self.inbox = midi, inbox
        self.actions: list[Action] = []

    def refresh(self) -> list[Action]:
        for act in self.inbox.drain():
            self.midi.observe(act)
            self.actions.append(act)
        return self.actions

    def wait(self, name: str, value: object = None, count: int = 1) -> list[Action]:
        """Refresh until `count` actions named `name` (with `value`, where given) have come."""
        def matching() -> list[Action]:
            return [a for a in self.refresh() if a.name == name and (value is None or a.value == value)]
        return until(lambda: len(matching()) >= count and matching(), f"{count} x {name} {value if value else ''}")


def controller(tmp_path: Path, said: list[str], inbox: Inbox | None = None, **config: object) -> MidiController:
    midi = MidiController(MidiConfig(api="jack", **config), Inbox() if inbox is None else inbox, tmp_path, said.append)
    midi.start()
    return midi


def test_a_learned_cc_moves_the_walk_truncation_across_its_range(jack, tmp_path):
    inbox, said = Inbox(), []
    osc = OscServer(OscConfig(host="127.0.0.1", port=0, state_every=0.0), inbox)
    osc.start()
    knobs = Controller(unique("nanoKONTROL"))
    midi = controller(tmp_path, said, inbox, input=knobs.port)
    show, client = Show(midi, inbox), Client(osc.address)
    try:
        assert midi.describe().startswith("MIDI on JACK: reading controller:nanoKONTROL")
        until(lambda: midi.ports, "the controller's port to be opened")
        client.send("/uncanny/midi/learn", "/uncanny/walk/truncation")  # over UDP, as a tablet would
        show.wait("midi_learn")
        assert midi.learning == "/uncanny/walk/truncation" and "move a knob, fader or pad" in said[-1]
        knobs.cc(74, 30)  # the move that is learned; it does nothing else
        until(lambda: said[-1].startswith("MIDI learn: cc 1 74 /uncanny/walk/truncation (kept in"), "the learn")
        assert json.loads((tmp_path / FILE_NAME).read_text()) == {"mappings": ["cc 1 74 /uncanny/walk/truncation"]}
        assert midi.learning == ""
        for value, truncation in [(0, 0.1), (127, 1.5), (64, knob_value(TRUNCATION, 64))]:  # the ends, exactly
            knobs.cc(74, value)
            show.wait("walk_truncation", truncation)
        moved = len(show.actions)
        for value in range(128):  # a sweep: the inbox keeps the newest fader value, each refresh takes one
            knobs.cc(74, value)
            show.refresh()
        show.wait("walk_truncation", 1.5, count=2)
        sweep = [a.value for a in show.actions[moved:] if a.name == "walk_truncation"]
        assert sweep == sorted(sweep) and sweep[-1] == 1.5 and all(0.1 <= v <= 1.5 for v in sweep)
        assert knob_value(TRUNCATION, 30) not in [a.value for a in show.actions]  # the learning move
        assert all(a.source == "midi" for a in show.actions if a.name == "walk_truncation")
        assert midi.stats["internal"] == 0
    finally:
        midi.stop()
        knobs.close()
        client.close()
        osc.stop()


def test_a_note_on_a_trigger_fires_once_per_press_and_releases_do_nothing(jack, tmp_path):
    knobs, said = Controller(unique("pads")), []
    midi = controller(tmp_path, said, input=knobs.port, mappings=(
        "note 10 36 /uncanny/reset", "cc 1 20 /uncanny/snapshot", "note 10 37 /uncanny/view/grid",
        "note 10 38 /uncanny/view/blackout", "note 10 39 /uncanny/view/blackout 1 3", "note 16 0 /uncanny/back"))
    show = Show(midi, midi.inbox)
    try:
        until(lambda: midi.ports, "the pads' port")
        for _ in range(3):
            knobs.note(36, 100, channel=10)
            knobs.note_off(36, channel=10)  # note-off ...
            knobs.note(36, 0, channel=10)  # ... and note-on velocity 0: both releases
        for value in (127, 0, 127, 100, 0):  # a CC button: 127 pressed, 0 released; 100 while held is no press
            knobs.cc(20, value)
        knobs.note(37, 90, channel=10)
        knobs.note(37, 90, channel=10)
        knobs.note(0, 1, channel=16)  # the last message: once its action is here, everything before was handled
        show.wait("back")
        assert [a.name for a in show.actions] == ["reset"] * 3 + ["snapshot"] * 2 + ["grid", "grid", "back"]
        assert [a.value for a in show.actions if a.name == "grid"] == [None, None]  # no argument: toggle
        midi.publish(ControlState(controls={"blackout": 0.0}))
        knobs.note(38, 127, channel=10)  # a pad on a value: the other end of its range
        show.wait("blackout", (1.0, 0.0))
        midi.publish(ControlState(controls={"blackout": 1.0}))
        knobs.note(38, 127, channel=10)
        show.wait("blackout", (0.0, 0.0))
        knobs.note(39, 5, channel=10)  # written arguments: exactly those
        show.wait("blackout", (1.0, 3.0))
    finally:
        midi.stop()
        knobs.close()


def test_learned_mappings_survive_a_restart_and_a_relearn_moves_them(jack, tmp_path):
    knobs, said = Controller(unique("launch")), []
    midi = controller(tmp_path, said, input=knobs.port)
    try:
        until(lambda: midi.ports, "the port")
        midi.observe(action("blackout", 1.0, source="osc"))  # touched on the tablet ...
        midi.observe(action("midi_learn", source="keys"))  # ... then the key m: learn that one
        assert midi.learning == "/uncanny/view/blackout"
        knobs.cc(10, 0)
        until(lambda: midi.learning == "" and (tmp_path / FILE_NAME).exists(), "the learned blackout")
        midi.observe(action("midi_learn", "/uncanny/reset"))
        knobs.note(60, 100)
        until(lambda: "note 1 60 /uncanny/reset" in (tmp_path / FILE_NAME).read_text(), "the learned pad")
        midi.observe(action("midi_learn", "/uncanny/view/blackout"))  # learned again, on another knob
        knobs.cc(11, 5)
        until(lambda: "cc 1 11" in (tmp_path / FILE_NAME).read_text(), "the relearned blackout")
    finally:
        midi.stop()
    assert json.loads((tmp_path / FILE_NAME).read_text())["mappings"] == [
        "note 1 60 /uncanny/reset", "cc 1 11 /uncanny/view/blackout"]
    again = controller(tmp_path, said, input=knobs.port)  # a restart: a new controller reads the run folder
    show = Show(again, again.inbox)
    try:
        assert {m.text() for m in again.mappings().values()} == {"note 1 60 /uncanny/reset",
                                                                 "cc 1 11 /uncanny/view/blackout"}
        until(lambda: again.ports, "the port after the restart")
        knobs.cc(10, 127)  # the old knob is not mapped any more
        knobs.cc(11, 127)
        show.wait("blackout", (1.0, 0.0))
        knobs.note(60, 64)
        show.wait("reset")
        assert [a.name for a in show.actions] == ["blackout", "reset"] and again.stats["unmapped"] == 1
    finally:
        again.stop()
        knobs.close()


def test_a_malformed_mapping_file_is_one_line_and_kept_aside_when_a_control_is_learned(jack, tmp_path):
    path = tmp_path / FILE_NAME
    cases = [b"\x00\xff not json", b"[1, 2]", b'{"mappings": "cc 1 1 /uncanny/reset"}', b"[" * 100_000,
             json.dumps({"mappings": ["cc 1 1 /nope", "cc 1 2 /uncanny/reset", 7]}).encode()]
    for data in cases:
        path.write_bytes(data)
        said: list[str] = []
        midi = MidiController(MidiConfig(api="jack"), Inbox(), tmp_path, said.append)
        assert len(said) == 1 and "\n" not in said[0] and str(path) in said[0], said
        assert [m.text() for m in midi.mappings().values()] == (["cc 1 2 /uncanny/reset"] if b"nope" in data else [])
    path.unlink()
    path.mkdir()  # not even a file
    said = []
    assert not MidiController(MidiConfig(api="jack"), Inbox(), tmp_path, said.append).mappings() and len(said) == 1
    path.rmdir()
    path.write_bytes(b"{broken")
    knobs, said = Controller(unique("kp")), []
    midi = controller(tmp_path, said, input=knobs.port)
    try:
        until(lambda: midi.ports, "the port")
        midi.observe(action("midi_learn", "/uncanny/snapshot"))

        def learned() -> bool:
            knobs.note(1, 1)  # again until heard: a loaded JACK drops a late cycle's MIDI
            return any(line.startswith("MIDI learn: note 1 1 /uncanny/snapshot") for line in said)

        until(learned, "the learn")
    finally:
        midi.stop()
        knobs.close()
    assert (tmp_path / (FILE_NAME + ".bad")).read_bytes() == b"{broken"
    assert json.loads(path.read_text()) == {"mappings": ["note 1 1 /uncanny/snapshot"]}


def test_random_midi_bytes_never_crash_it_and_are_logged_rate_limited(jack, tmp_path, caplog):
    knobs, said = Controller(unique("fuzz")), []
    midi = controller(tmp_path, said, input=knobs.port, mappings=("note 16 0 /uncanny/back",))
    show = Show(midi, midi.inbox)
    rng = random.Random(23)
    caplog.set_level(logging.WARNING, logger="installation.control.midi")
    try:
        until(lambda: midi.ports, "the port")
        backs = sent = 0
        for batch in range(50):  # in batches, each closed by the marker, so JACK's buffers never overflow
            for _ in range(100):
                if rng.random() < 0.05:  # SysEx of any length holding any bytes
                    data = [0xF0] + [rng.randrange(256) for _ in range(rng.randrange(0, 40))] + [0xF7]
                else:  # anything of one to three bytes: running status, truncated, bad data bytes, clock ...
                    data = [rng.randrange(256) for _ in range(rng.randrange(1, 4))]
                    if data[0] == 0xF0:  # (rtmidi joins an unended SysEx with what follows, up to an F7, as
                        data.append(0xF7)  # SysEx split in chunks is sent; a device that never ends one is broken)
                knobs.send(data)
                sent += data[0] not in (0xF1, 0xF8, 0xFE)  # timing and active sensing: filtered out by rtmidi
            knobs.note(0, 1, channel=16)
            backs += 1
            show.wait("back", count=backs)  # (random bytes may make a back of their own: at least this many)
        assert midi.stats["received"] == sent + backs and midi.stats["internal"] == 0  # every one was handled
        assert midi.stats["running status"] > 0 and midi.stats["malformed"] > 0 and midi.stats["sysex"] > 0
        # direct: byte lists rtmidi would not even send (empty, long, huge values)
        for _ in range(20000):
            data = [rng.randrange(-5, 300) for _ in range(rng.randrange(0, 12))]
            midi._receive((data, 0.0), "direct")
        assert midi.stats["internal"] == 0
        lines = [r for r in caplog.records if r.name == "installation.control.midi"]
        assert len(lines) <= 40  # one per port and kind every 10 s, not one per message
        knobs.cc(7, 1)  # unmapped, and still working afterwards
        knobs.note(0, 100, channel=16)
        show.wait("back", count=sum(a.name == "back" for a in show.actions) + 1)
        assert midi._thread is not None and midi._thread.is_alive()
    finally:
        midi.stop()
        knobs.close()


def test_feedback_lights_the_pads_and_leaves_a_knob_the_hand_holds_alone(jack, tmp_path):
    knobs, lights, said = Controller(unique("apc")), Lights(unique("apcLEDs")), []
    midi = controller(tmp_path, said, input=knobs.port, output=lights.port, mappings=(
        "cc 1 74 /uncanny/walk/truncation", "note 1 36 /uncanny/view/grid", "note 1 37 /uncanny/toggle_pause",
        "note 1 38 /uncanny/reset", "note 1 39 /uncanny/loss softplus"))
    try:
        until(lambda: midi.ports and midi.outputs, "both ports")
        midi.publish(ControlState(paused=True, controls={"walk_truncation": 0.8, "grid": 1, "loss": "softplus"}))
        until(lambda: len(lights.received) >= 4, "the first feedback")
        assert sorted(lights.received) == sorted([[0xB0, 74, knob_position(TRUNCATION, 0.8)], [0x90, 36, 127],
                                                  [0x90, 37, 127], [0x90, 39, 127]])  # reset: nothing to light
        knobs.cc(74, 100)  # the hand moves the knob; the installation applies it and publishes it
        until(lambda: midi.inbox.drain(), "the knob's action")
        midi.publish(ControlState(paused=True, controls={"walk_truncation": knob_value(TRUNCATION, 100), "grid": 0,
                                                         "loss": "log"}))
        until(lambda: [0x90, 36, 0] in lights.received, "the grid pad going dark")
        assert [0x90, 39, 0] in lights.received
        assert [m for m in lights.received if m[0] == 0xB0] == [[0xB0, 74, knob_position(TRUNCATION, 0.8)]]
    finally:
        midi.stop()
        knobs.close()
        lights.close()


@pytest.mark.parametrize("case", ["no package", "no jack server", "no alsa"])
def test_a_missing_package_or_midi_system_is_one_line_and_nothing_on_stderr(case):
    if case == "no alsa" and Path("/dev/snd/seq").exists():
        pytest.skip("this machine has an ALSA sequencer")
    pytest.importorskip("rtmidi") if case != "no package" else None
    block = "import sys; sys.modules['rtmidi'] = None\n" if case == "no package" else ""
    api = "alsa" if case == "no alsa" else "jack"
    script = (f"{block}from installation.control.midi import MidiConfig, MidiController\n"
              "from installation.control.inbox import Inbox\n"
              f"midi = MidiController(MidiConfig(api={api!r}), Inbox())\n"
              "midi.start()\nprint(midi.describe())\nmidi.observe(__import__('installation.control.actions', "
              "fromlist=['action']).action('midi_learn', '/uncanny/reset'))\nmidi.stop()\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JACK_DEFAULT_SERVER": unique("nobody-"), "JACK_NO_START_SERVER": "1"})
    assert done.returncode == 0 and done.stdout.count("\n") == 1, done
    assert done.stdout.startswith("MIDI off: ") and "the show goes on without it" in done.stdout
    assert ("python-rtmidi is not installed" in done.stdout) == (case == "no package")
    stderr = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(stderr) == 1 and "MIDI learn for /uncanny/reset: MIDI off" in stderr[0], done.stderr  # the say line


def test_every_control_maps_to_a_knob_and_a_pad_and_the_knob_covers_its_fader_range():
    for spec in SPECS:
        if not spec.address or spec.kind == "query" or spec.name == "midi_learn" or spec.required > 1:
            continue
        for kind in ("cc", "note"):
            mapping = parse_mapping(f"{kind} 1 1 {spec.address}")
            if (arg := mapping.knob) is not None and not arg.choices:
                low, high = arg.fader_range
                assert (knob_value(arg, 0), knob_value(arg, 127)) == (low, high)
                assert all(knob_position(arg, knob_value(arg, v)) == v for v in range(128)) or arg.tag == "i"
            elif arg is not None:
                assert [knob_value(arg, knob_position(arg, c)) for c in arg.choices] == list(arg.choices)
    with pytest.raises(ConfigError, match=r"mapping 'cc 1 1 /uncanny/record/loop': /uncanny/record/loop: takes 2"):
        parse_mapping("cc 1 1 /uncanny/record/loop")
    assert parse_mapping("cc 1 1 /uncanny/record/loop 8").knob.name == "iteration"


def test_midi_preset_table_is_documented_and_validated(tmp_path):
    import dataclasses

    assert load_preset("default").midi == MidiConfig()
    text = (ROOT / "presets" / "default.toml").read_text()
    assert "\n[midi]" in text and all(f"\n{f.name} = " in text for f in dataclasses.fields(MidiConfig))
    path = tmp_path / "midi.toml"
    path.write_text('[midi]\napi = "jack"\ninput = "nano"\nmappings = ["cc 1 74 /uncanny/walk/truncation"]\n')
    assert load_preset(path).midi.mappings == ("cc 1 74 /uncanny/walk/truncation",)
    for body, message in [
        ("api = 'coreaudio'", r"\[midi\] api must be one of auto, alsa, jack, got 'coreaudio'"),
        ("input = 5", r"\[midi\] input must be a string"),
        ("mappings = 'cc 1 74 /uncanny/lr'", r"\[midi\] mappings must be a list"),
        ("mappings = ['cc 1 74 /uncanny/nope']", r"\[midi\] mapping 'cc 1 74 /uncanny/nope': must be the address"),
        ("mappings = ['cc 17 74 /uncanny/lr']", r"\[midi\] mapping 'cc 17 74 /uncanny/lr': channel must be"),
        ("mappings = ['cc 1 74 /uncanny/lr', 'cc 1 74 /uncanny/speed']", r"cc 1/74 is mapped twice"),
        ("mappings = [3]", r"\[midi\] mappings are strings like"),
    ]:
        path.write_text(f"[midi]\n{body}\n")
        with pytest.raises(PresetError, match=message):
            load_preset(path)
