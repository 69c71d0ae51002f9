"""The action table is the one source: its ranges are the engine's rules, the docs, the Open Stage Control
session and the key map are generated from it or checked against it; the inbox coalesces and stays bounded."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from installation.control.actions import BY_NAME, SPECS, Action, ActionError, action, button, make_action
from installation.control.docs import osc_markdown, table_addresses
from installation.control.inbox import Inbox
from installation.control.keys import KEYS, key_action, key_handlers
from installation.control.state import DESCRIPTIONS, PHASES, STATE_FIELDS, TYPE_TAGS, ControlState, Phase, \
    control_values
from installation.engine.commands import COMMANDS, Command, parse_command
from installation.engine.state import STATUSES, EngineState, EngineStatus
from installation.presets import PresetError, load_preset
from installation.control.config import OscConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_osc_md_is_the_generated_text():
    assert (DOCS / "osc.md").read_text() == osc_markdown(), \
        "regenerate: python3 -m installation.control.docs > docs/osc.md"


def test_docs_table_lists_every_osc_address_once():
    assert table_addresses(osc_markdown()) == [s.address for s in SPECS if s.address]


def test_ranges_written_in_the_table_are_exactly_what_the_checks_accept():
    for spec in SPECS:
        for arg in spec.args:
            if arg.choices:
                for choice in arg.choices:
                    assert arg.check(choice) == choice
                with pytest.raises(ValueError):
                    arg.check("no-such-choice")
                continue
            if arg.tag == "s":  # a free string: /uncanny/midi/learn's address
                assert arg.check("/uncanny/walk/truncation") == "/uncanny/walk/truncation"
                for bad in ("/uncanny/state", "/uncanny/record/loop", "/nope", ""):
                    with pytest.raises(ValueError):
                        arg.check(bad)
                continue
            kind = int if arg.tag == "i" else float
            step = 1 if arg.tag == "i" else max(abs(arg.low), 1.0) * 1e-9
            if arg.low_open:
                arg.check(kind(arg.low + step))
            else:
                arg.check(kind(arg.low))
            with pytest.raises(ValueError):
                arg.check(kind(arg.low) if arg.low_open else kind(arg.low - step))
            if arg.high is None:
                arg.check(kind(10**9))
            else:
                arg.check(kind(arg.high))
                with pytest.raises(ValueError):
                    arg.check(kind(arg.high + (1 if arg.tag == "i" else max(arg.high, 1.0) * 1e-9)))


def test_engine_actions_are_engine_commands_with_the_same_validation():
    for spec in SPECS:
        if spec.kind != "engine":
            assert spec.command is None
            continue
        commands = {spec.command} | ({spec.bare_command} if spec.bare_command else set())
        assert commands <= set(COMMANDS)
    acts = [action("lr", 0.0005), action("loss", "log"), action("batch", 8), action("speed", 3.0),
            action("rewind", 150), action("rewind"), action("back"), action("toggle_pause"), action("reset"),
            action("snapshot"), action("pause"), action("resume")]
    for act in acts:
        command = act.engine_command()
        assert parse_command(command) == command and command.id == act.id  # the id the engine's refusal names
    assert len({act.id for act in acts}) == len(acts)
    back, speed = action("rewind"), action("speed", 0)
    assert (back.engine_command(), speed.engine_command()) == (Command("back", id=back.id),
                                                               Command("limit", 0.0, speed.id))
    with pytest.raises(ValueError, match="grid is a display action"):
        action("grid").engine_command()


def reset(*args):
    return make_action(BY_NAME["reset"], args, "osc")


def test_validation_errors_are_one_line_naming_the_address():
    cases = [
        (lambda: action("lr", 3.0), "/uncanny/lr: lr must be 0"),
        (lambda: action("walk_period", 0.0), "/uncanny/walk/period: period must be a finite number > 0"),
        (lambda: action("walk_seed", 2**31), "/uncanny/walk/seed: seed must be an integer from 0 to 2147483647"),
        (lambda: action("blackout", 0.5, 601.0), "/uncanny/view/blackout: blackout seconds must be"),
        (lambda: action("loss", "x" * 65), "/uncanny/loss: name string of 65 characters; at most 64"),
        (lambda: action("nope"), "unknown action 'nope'"),
        (lambda: action("quit", 1), "quit: takes 0 arguments, got 1"),  # from code: no button reading
        (lambda: action("reset", 1.0), "/uncanny/reset: takes 0 arguments, got 1"),
        (lambda: reset("go"), "/uncanny/reset: takes 0 arguments or 1 button value (a number, T or F), got 'go'"),
        (lambda: reset(1, 0), "/uncanny/reset: takes 0 arguments or 1 button value (a number, T or F), got 2 "
                              "arguments"),
        (lambda: reset(float("nan")), "/uncanny/reset: takes 0 arguments or 1 button value"),
        (lambda: make_action(BY_NAME["rewind"], [2.5]), "/uncanny/rewind: iteration expects an integer, got 2.5"),
        (lambda: make_action(BY_NAME["rewind"], [-1]), "/uncanny/rewind: rewind iteration must be an integer >= 0"),
        (lambda: make_action(BY_NAME["record_start"], ["vp9"]), "/uncanny/record/start: codec must be one of"),
    ]
    for make, message in cases:
        with pytest.raises(ActionError) as info:
            make()
        assert str(info.value).startswith(message) and "\n" not in str(info.value)


BUTTON_VALUES = [(1.0, 0.0), (True, False), (1, 0)]  # TouchOSC and bridges; T/F; int 1/0


def test_one_button_rule_for_every_trigger():
    assert [button(v) for v in (1.0, 1, True, -1, 0.5, 2**40)] == [True] * 6
    assert [button(v) for v in (0.0, 0, False, -0.0)] == [False] * 4
    assert [button(v) for v in ("1", b"\1", float("nan"), float("inf"), None)] == [None] * 5
    triggers = [s for s in SPECS if s.trigger]
    assert {s.name for s in triggers} == {"pause", "resume", "toggle_pause", "reset", "rewind", "back", "snapshot",
                                          "record_start", "record_stop", "record_toggle", "fullscreen", "quit",
                                          "state", "snapshots"}
    for spec in triggers:
        bare = make_action(spec, [])
        for press, release in BUTTON_VALUES:
            pressed = make_action(spec, [press])
            assert (pressed.name, pressed.value) == (bare.name, bare.value) == (spec.name, None), spec.name
            assert make_action(spec, [release]) is None, spec.name
    # rewind: only 1 and T press; other numbers are iterations (floats from a fader or a number box too)
    assert [make_action(BY_NAME["rewind"], [v]).value for v in (500.0, 2, 1.0, True)] == [500, 2, None, None]
    assert [make_action(BY_NAME["record_start"], [v]).value for v in ("prores", 2.0)] == ["prores", None]
    # switches and the ping token are values, not buttons
    assert [make_action(BY_NAME[name], [v]).value for name, v in [("grid", 0.0), ("hud", False), ("ping", 0)]] == \
        [0, 0, 0]
    # code means what it says: the director's rewind to iteration 1 is iteration 1, not a press
    director = action("rewind", 1, source="director")
    assert director.engine_command() == Command("rewind", 1, director.id)


def test_a_float_control_set_with_a_bool_or_an_int_is_a_float_and_echoes_one():
    assert action("blackout", True).value == (1.0, 0.0) and type(action("lr", 0).value) is float
    state = ControlState(controls={"blackout": 1, "lr": 0, "speed": 4, "grid": True, "walk_seed": 3.0,
                                   "loss": "log"})
    assert [tuple(type(v) for v in control_values(state, n)) for n in state.controls] == \
        [(float,), (float,), (float,), (int,), (int,), (str,)]


def test_statuses_and_phases_are_str_enums_the_states_hold():
    assert STATUSES == tuple(EngineStatus) and "running" in STATUSES and EngineStatus.RUNNING == "running"
    assert PHASES == tuple(Phase) and f"{Phase.FADE_OUT}" == "fade_out"
    state = ControlState(status="paused", phase="hold")
    assert state.status is EngineStatus.PAUSED and state.phase is Phase.HOLD
    assert EngineState(status="crashed").status is EngineStatus.CRASHED and EngineState(status="failed").paused
    for bad in ({"status": "dancing"}, {"phase": "intermission"}):
        with pytest.raises(ValueError, match="is not a valid"):
            ControlState(**bad)


def test_osc_floats_come_out_as_the_decimal_that_was_sent():
    import struct

    as_sent = struct.unpack(">f", struct.pack(">f", 0.0007))[0]  # what a 32-bit OSC float carries
    assert as_sent != 0.0007 and make_action(BY_NAME["lr"], [as_sent]).value == 0.0007
    assert make_action(BY_NAME["lr"], [0.00070000001]).value == 0.00070000001  # 64-bit values are kept


def test_inbox_coalesces_faders_keeps_discrete_order_and_is_bounded():
    inbox = Inbox(capacity=3)
    assert inbox.put(action("lr", 0.1)) and inbox.put(action("reset")) and inbox.put(action("lr", 0.2))
    assert inbox.put(action("blackout", 1.0)) and inbox.put(action("back")) and inbox.put(action("back"))
    assert not inbox.put(action("snapshot"))  # the fourth discrete action waits at the door
    assert inbox.put(action("blackout", 0.0, 2.0))  # faders are always accepted: one slot per name
    assert [(a.name, a.value) for a in inbox.drain()] == [
        ("reset", None), ("lr", 0.2), ("back", None), ("back", None), ("blackout", (0.0, 2.0))]
    assert inbox.drain() == [] and inbox.refused == 1
    assert inbox.put(action("snapshot"))  # drained: room again


def test_inbox_under_threads_loses_nothing_and_keeps_per_thread_order():
    inbox = Inbox(capacity=100_000)
    received: list[Action] = []
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            received.extend(inbox.drain())
        received.extend(inbox.drain())

    def produce(seed: int) -> None:
        for i in range(2, 2002):  # 0 and 1 would be a button's release and press
            inbox.put(action("rewind", seed * 10_000 + i))
    drainer = threading.Thread(target=drain)
    drainer.start()
    producers = [threading.Thread(target=produce, args=(s,)) for s in range(4)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    done.set()
    drainer.join()
    values = [a.value for a in received]
    assert len(values) == 8000
    for seed in range(4):
        mine = [v for v in values if v // 10_000 == seed]
        assert mine == sorted(mine) and len(mine) == 2000


def test_key_map_produces_the_same_actions_as_osc():
    glfw = pytest.importorskip("glfw")
    for name, code, action_name in KEYS:
        assert getattr(glfw, f"KEY_{name.upper()}") == code
        assert key_action(code) == Action(action_name, None, "keys")
    assert key_action(glfw.KEY_Z) is None
    inbox = Inbox()
    handlers = key_handlers(inbox.put)
    handlers[glfw.KEY_LEFT]()
    handlers[glfw.KEY_SPACE]()
    handlers[glfw.KEY_G]()
    assert [a.name for a in inbox.drain()] == ["back", "toggle_pause", "grid"]
    assert {n for _, _, n in KEYS} <= set(BY_NAME)


def test_state_fields_are_typed_and_described_once():
    assert set(TYPE_TAGS) == set(DESCRIPTIONS) == set(STATE_FIELDS)
    with pytest.raises(ValueError, match="controls for unknown actions: volume"):
        ControlState(controls={"volume": 1})


def test_osc_preset_table_is_documented_and_validated(tmp_path):
    default = load_preset("default")
    assert default.osc == OscConfig()
    text = (Path(__file__).resolve().parents[1] / "presets" / "default.toml").read_text()
    for f in dataclasses.fields(OscConfig):
        assert f"\n{f.name} = " in text
    path = tmp_path / "osc.toml"
    path.write_text('[osc]\nport = 9001\nfeedback = ["192.168.1.20:9000", "[::1]:9000"]\nallow = ["192.168.1.20"]\n')
    osc = load_preset(path).osc
    assert osc.port == 9001 and osc.feedback == ("192.168.1.20:9000", "[::1]:9000") and osc.allow == ("192.168.1.20",)
    for body, message in [
        ("port = 70000", r"\[osc\] port must be an integer from 0 to 65535"),
        ("host = 'everywhere'", r"\[osc\] host must be an IP address"),
        ("feedback = ['tablet']", r"\[osc\] feedback entries must be \"host:port\""),
        ("feedback = [9000]", r"\[osc\] feedback entries must be \"host:port\" strings, got 9000"),
        ("allow = ['192.168.1.0/33']", r"\[osc\] allow entries must be networks"),
        ("state_every = -1", r"\[osc\] state_every must be a finite number >= 0"),
        ("allow = '10.0.0.0/8'", r"\[osc\] allow must be a list"),
    ]:
        path.write_text(f"[osc]\n{body}\n")
        with pytest.raises(PresetError, match=message):
            load_preset(path)
    assert default.replace("osc", port=0, enabled=False).osc.enabled is False


def test_run_flags_for_osc_parse_and_refuse_bad_ports():
    from installation.cli import build_parser

    args = build_parser().parse_args(["--osc-port", "9000", "--no-osc"])
    assert (args.osc_port, args.no_osc) == (9000, True)
    assert (build_parser().parse_args([]).osc_port, build_parser().parse_args([]).no_osc) == (None, False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--osc-port", "70000"])
