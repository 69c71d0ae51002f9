"""The OSC server over real UDP sockets on loopback: actions into the inbox, replies, feedback, bad input, fuzz.

Ordering makes the waits exact: the server handles datagrams one at a time in arrival order, so once the pong
of a ping sent after some datagrams is back, those datagrams have been handled.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from installation.control.actions import BY_ADDRESS, BY_NAME, Action, action, make_action, osc_specs
from installation.control.inbox import Inbox
from installation.control.osc import OscServer
from installation.control.packets import build_message
from installation.control.service import ControlService
from installation.control.state import STATE_FIELDS, ControlState
from installation.control.config import HttpConfig, OscConfig

sys.path.insert(0, str(Path(__file__).parent))
import osc_fuzz  # noqa: E402
from osc_client import WAIT, Client  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_server(**config: Any) -> tuple[OscServer, Inbox]:
    inbox = Inbox()
    server = OscServer(OscConfig(**{"host": "127.0.0.1", "port": 0, "state_every": 0.0, **config}), inbox)
    server.start()
    return server, inbox


@pytest.fixture
def served() -> Iterator[tuple[OscServer, Inbox, Client]]:
    server, inbox = make_server()
    client = Client(server.address)
    yield server, inbox, client
    client.close()
    server.stop()


# (address, arguments) -> the Action the inbox must hold (name, value)
GOOD = [
    ("/uncanny/pause", (), "pause", None),
    ("/uncanny/resume", (), "resume", None),
    ("/uncanny/toggle_pause", (), "toggle_pause", None),
    ("/uncanny/reset", (), "reset", None),
    ("/uncanny/rewind", (), "rewind", None),
    ("/uncanny/rewind", (300,), "rewind", 300),
    ("/uncanny/rewind", (300.0,), "rewind", 300),  # TouchOSC sends floats
    ("/uncanny/back", (), "back", None),
    ("/uncanny/snapshot", (), "snapshot", None),
    ("/uncanny/lr", (0.0005,), "lr", 0.0005),
    ("/uncanny/lr", (0,), "lr", 0.0),
    ("/uncanny/loss", ("softplus",), "loss", "softplus"),
    ("/uncanny/batch", (8,), "batch", 8),
    ("/uncanny/batch", (8.0,), "batch", 8),
    ("/uncanny/speed", (2.5,), "speed", 2.5),
    ("/uncanny/journey/minutes", (30.0,), "journey_minutes", 30.0),
    ("/uncanny/journey/minutes", (0,), "journey_minutes", 0.0),
    ("/uncanny/walk/period", (12.0,), "walk_period", 12.0),
    ("/uncanny/walk/truncation", (0.5,), "walk_truncation", 0.5),
    ("/uncanny/walk/seed", (42,), "walk_seed", 42),
    ("/uncanny/view/grid", (1,), "grid", 1),
    ("/uncanny/view/grid", (0.0,), "grid", 0),
    ("/uncanny/view/grid", (), "grid", None),
    ("/uncanny/view/grid", (True,), "grid", 1),
    ("/uncanny/view/hud", (1,), "hud", 1),
    ("/uncanny/view/blackout", (1.0,), "blackout", (1.0, 0.0)),
    ("/uncanny/view/blackout", (0.25, 3.0), "blackout", (0.25, 3.0)),
    ("/uncanny/record/start", (), "record_start", None),
    ("/uncanny/record/start", ("h264",), "record_start", "h264"),
    ("/uncanny/record/stop", (), "record_stop", None),
    ("/uncanny/record/loop", (500, 10.0), "record_loop", (500, 10.0)),
    ("/uncanny/midi/learn", ("/uncanny/walk/truncation",), "midi_learn", "/uncanny/walk/truncation"),
    ("/uncanny/midi/learn", (), "midi_learn", None),  # the address last touched
]


@pytest.mark.parametrize("address, args, name, value", GOOD)
def test_every_action_address_enqueues_its_action(served, address, args, name, value):
    server, inbox, client = served
    client.send(address, *args)
    client.sync()
    assert inbox.drain() == [Action(name, value, "osc", client.address)]


def test_every_action_address_of_the_table_is_covered_above():
    tested = {address for address, *_ in GOOD} | {"/uncanny/ping", "/uncanny/state", "/uncanny/snapshots"}
    assert tested == set(BY_ADDRESS)


def test_a_midi_learn_for_an_address_no_control_can_drive_is_refused_in_one_line(served):
    server, inbox, client = served
    for address, reason in [("/uncanny/nope", "must be the address of a control"),
                            ("/uncanny/state", "must be the address of a control"),
                            ("/uncanny/record/loop", "takes 2 arguments and one MIDI control gives one")]:
        client.send("/uncanny/midi/learn", address)
        text = client.expect("/uncanny/error")[0]
        assert text.startswith("/uncanny/midi/learn: ") and reason in text and "\n" not in text
    client.sync()
    assert inbox.drain() == []


def test_nil_arguments_count_as_none(served):
    server, inbox, client = served
    client.send_raw(osc_fuzz.raw_message(b"/uncanny/reset", b",N"))  # what an OSCQuery trigger sends
    client.sync()
    assert [a.name for a in inbox.drain()] == ["reset"]


def test_faders_coalesce_and_discrete_actions_keep_their_order(served):
    server, inbox, client = served
    for i in range(50):
        client.send("/uncanny/walk/truncation", 0.5 + i / 100)
        if i in (10, 30):
            client.send("/uncanny/back")
    client.send("/uncanny/reset")
    client.sync()
    assert [(a.name, a.value) for a in inbox.drain()] == [
        ("back", None), ("back", None), ("walk_truncation", 0.99), ("reset", None)]


def test_queries_answer_from_the_published_state(served):
    server, inbox, client = served
    server.publish(ControlState(iteration=120, status="running", loss=-3.5, d=1.25, snapshots=(0, 50, 100),
                                collapsed=True, controls={"lr": 5e-05, "grid": 1, "blackout": 0.0}))
    client.send("/uncanny/ping")
    assert client.expect("/uncanny/pong") == []
    client.send("/uncanny/snapshots")
    assert client.expect("/uncanny/snapshots") == [0, 50, 100]
    client.send("/uncanny/state")
    assert client.expect("/uncanny/state/iteration") == [120]
    assert client.expect("/uncanny/state/status") == ["running"]
    assert client.expect("/uncanny/state/loss") == [-3.5]
    assert client.expect("/uncanny/state/d") == [1.25]
    assert client.expect("/uncanny/state/collapsed") == [1]
    assert client.expect("/uncanny/lr") == [pytest.approx(5e-05)]
    assert client.expect("/uncanny/view/grid") == [1]
    assert inbox.drain() == []  # queries never reach the display or the engine


def bad_inputs() -> list[tuple[str, bytes, str]]:
    now = time.time()
    return [
        ("unknown address", build_message("/uncanny/explode"), "unknown address /uncanny/explode"),
        ("too many arguments", build_message("/uncanny/reset", 1, 0), "takes 0 arguments or 1 button value"),
        ("string for a button", build_message("/uncanny/reset", "go"), "takes 0 arguments or 1 button value"),
        ("nan for a button", build_message("/uncanny/snapshot", float("nan")), "takes 0 arguments or 1 button"),
        ("too few arguments", build_message("/uncanny/lr"), "takes 1 argument"),
        ("wrong type", build_message("/uncanny/lr", "fast"), "expects a number, got 'fast'"),
        ("string for int", build_message("/uncanny/batch", "4"), "expects an integer"),
        ("fraction for int", build_message("/uncanny/batch", 4.5), "expects an integer, got 4.5"),
        ("nan", build_message("/uncanny/lr", float("nan")), "expects a finite number"),
        ("inf", build_message("/uncanny/walk/period", float("inf")), "expects a finite number"),
        ("out of range", build_message("/uncanny/lr", 2.0), "lr must be 0"),
        ("out of range int", build_message("/uncanny/batch", 65), "batch must be an integer from 1 to 64"),
        ("negative rewind", build_message("/uncanny/rewind", -5), "rewind iteration must be an integer >= 0"),
        ("unknown loss", build_message("/uncanny/loss", "hinge"), "loss must be one of logit, softplus, log"),
        ("negative journey", build_message("/uncanny/journey/minutes", -1.0),
         "journey_minutes must be a finite number >= 0 and <= 525600"),
        ("journey beyond a year", build_message("/uncanny/journey/minutes", 1e6), "journey_minutes must be"),
        ("nan journey", build_message("/uncanny/journey/minutes", float("nan")), "expects a finite number"),
        ("text journey", build_message("/uncanny/journey/minutes", "long"), "expects a number, got 'long'"),
        ("huge string", build_message("/uncanny/loss", "x" * 2000), "at most 64"),
        ("over-long datagram", build_message("/uncanny/loss", "x" * 20000), "datagram of 20"),
        ("blob", osc_fuzz.raw_message(b"/uncanny/loss", b",b", b"\0\0\0\4abcd"), "a blob of 4 bytes"),
        ("garbage", b"\x00\x01garbage!", "not OSC"),
        ("empty", b"", "empty datagram"),
        ("truncated", build_message("/uncanny/lr", 0.5)[:-2], "truncated"),
        ("bad utf-8", osc_fuzz.raw_message(b"/uncanny/loss", b",s", osc_fuzz.osc_string(b"\xc3\x28")), "UTF-8"),
        ("negative bundle size", b"#bundle\0\0\0\0\0\0\0\0\1" + (-4).to_bytes(4, "big", signed=True),
         "bundle element size -4"),
        ("oversized bundle size", osc_fuzz.bundle(b"\0" * 7 + b"\1", build_message("/uncanny/reset"))[:-4],
         "does not fit"),
        ("far-future bundle", osc_fuzz.bundle(osc_fuzz.timetag(now + 3600), build_message("/uncanny/reset")),
         "in the future"),
        ("address pattern", build_message("/uncanny/*"), "address patterns"),
        ("nested too deep", osc_fuzz._nested(6), "nested deeper"),
    ]


@pytest.mark.parametrize("data, reason", [b[1:] for b in bad_inputs()], ids=[b[0] for b in bad_inputs()])
def test_bad_input_is_dropped_with_an_error_reply_and_the_server_goes_on(served, data, reason):
    server, inbox, client = served
    client.send_raw(data)
    error = client.expect("/uncanny/error")
    assert reason in error[0] and "\n" not in error[0]
    client.sync()
    assert inbox.drain() == []


def test_a_refused_fader_value_is_answered_with_the_current_one(served):
    server, inbox, client = served
    server.publish(ControlState(controls={"walk_truncation": 0.7}))
    client.send("/uncanny/walk/truncation", 5.0)
    assert "truncation must be" in client.expect("/uncanny/error")[0]
    assert client.expect("/uncanny/walk/truncation") == [pytest.approx(0.7)]


def test_near_future_bundles_run_at_once_rather_than_sleeping_the_server(served):
    server, inbox, client = served
    due = time.time() + 1.9  # within the clock-skew tolerance: accepted, and never scheduled
    client.send_raw(osc_fuzz.bundle(osc_fuzz.timetag(due), build_message("/uncanny/snapshot"),
                                    build_message("/uncanny/walk/seed", 3)))
    client.sync()
    assert time.time() < due, "the server held the bundle until its time tag (strict timing)"
    assert [(a.name, a.value) for a in inbox.drain()] == [("snapshot", None), ("walk_seed", 3)]


def test_senders_outside_the_allowlist_are_ignored_unanswered():
    server, inbox = make_server(allow=("10.0.0.0/8",))
    client = Client(server.address)
    try:
        client.send("/uncanny/reset")
        client.send("/uncanny/ping")
        client.send_raw(b"garbage")
        deadline = time.monotonic() + WAIT
        while server.stats["refused sender"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.stats["refused sender"] == 3 and server.stats["received"] == 0
        assert client.pending() is None  # nothing came back: not even an error
        assert inbox.drain() == []
        assert client.address not in server.recipients()
    finally:
        client.close()
        server.stop()


def test_a_flood_of_discrete_actions_is_bounded_and_refused_politely():
    server, inbox = make_server()
    inbox.capacity = 5
    client = Client(server.address)
    try:
        for _ in range(8):
            client.send("/uncanny/snapshot")
        client.sync()
        assert "5 actions are waiting" in client.expect("/uncanny/error")[0]
        assert len(inbox.drain()) == 5 and server.stats["busy"] == 3
    finally:
        client.close()
        server.stop()


def test_fuzz_ten_thousand_malformed_datagrams_then_ping_still_answers(served):
    server, inbox, client = served
    sent = pings = queued = 0
    for data in osc_fuzz.datagrams(10_000, seed=14):
        client.send_raw(data)
        sent += 1
        queued += len(data) + 512  # the kernel charges about this much per datagram against the buffer
        if queued > 64_000:  # paced well inside the receive buffer: no datagram is dropped, each is counted
            client.sync()
            pings, queued = pings + 1, 0
    client.sync()
    pings += 1
    assert server.stats["received"] == sent + pings
    assert server.stats["queries"] == pings
    assert server.stats["actions"] == 0 and inbox.drain() == []
    refused = sum(n for kind, n in server.stats.items() if kind not in ("received", "queries", "actions"))
    assert refused >= sent  # a bundle of several bad messages counts each
    assert {"malformed", "invalid", "future", "pattern", "too large", "unknown address", "released"} <= \
        set(server.stats)


def test_feedback_reaches_recent_senders_on_change_and_echoes_controls(served):
    server, inbox, client = served
    client.send("/uncanny/view/hud", 1)  # a control: now a recent sender
    client.sync()
    server.publish(ControlState(iteration=7, status="running", controls={"lr": 0.001}))
    assert client.expect("/uncanny/state/iteration", lambda a: a == [7]) == [7]
    assert client.expect("/uncanny/lr") == [pytest.approx(0.001)]
    server.publish(ControlState(iteration=8, status="paused", paused=True, controls={"lr": 0.001}))
    assert client.expect("/uncanny/state/status", lambda a: a == ["paused"])
    assert client.expect("/uncanny/state/paused", lambda a: a == [1])


def test_feedback_targets_and_periodic_state_without_sending_anything():
    listener = Client(("127.0.0.1", 9))
    server, inbox = make_server(feedback=(f"127.0.0.1:{listener.address[1]}",), state_every=0.2)
    try:
        server.publish(ControlState(fps=29.5, d=0.75))
        assert listener.expect("/uncanny/state/fps") == [29.5]
        assert listener.expect("/uncanny/state/fps") == [29.5]  # again: the periodic broadcast
        assert listener.expect("/uncanny/state/d") == [0.75]
    finally:
        listener.close()
        server.stop()


def test_reply_port_answers_the_senders_ip_at_that_port():
    listener = Client(("127.0.0.1", 9))
    server, inbox = make_server(reply_port=listener.address[1])
    sender = Client(server.address)
    try:
        sender.send("/uncanny/ping", 99)
        assert listener.expect("/uncanny/pong") == [99]
        assert sender.pending() is None
    finally:
        sender.close()
        listener.close()
        server.stop()


def test_a_busy_port_is_one_line():
    from installation.control.osc import OscError

    server, inbox = make_server()
    try:
        with pytest.raises(OscError, match="cannot listen for OSC on 127.0.0.1:") as info:
            OscServer(OscConfig(host="127.0.0.1", port=server.address[1]), Inbox())
        assert "\n" not in str(info.value)
    finally:
        server.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "osc", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_osc_command_sends_and_prints_the_answer(served):
    server, inbox, client = served
    port = str(server.address[1])
    server.publish(ControlState(snapshots=(0, 50)))
    done = run_cli("/uncanny/snapshots", "--port", port, "--wait", "30")  # ends as soon as the answer is there
    assert done.returncode == 0 and done.stdout == "/uncanny/snapshots 0 50\n"
    done = run_cli("/uncanny/ping", "7", "--port", port, "--wait", "30")
    assert (done.returncode, done.stdout, done.stderr) == (0, "/uncanny/pong 7\n", "")
    done = run_cli("/uncanny/lr", "f:nan", "--port", port, "--wait", "1")
    assert done.returncode == 1 and done.stdout.startswith('/uncanny/error "/uncanny/lr: rate expects a finite')
    assert done.stderr == "uncanny: an error came back\n"
    done = run_cli("/uncanny/loss", "softplus", "--port", port, "--wait", "30")  # taken in: the ping after it answered
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = run_cli("/uncanny/pause", "--port", port, "--wait", "0")  # only sent
    assert (done.returncode, done.stdout) == (0, "")
    client.sync()
    assert [(a.name, a.value, a.source) for a in inbox.drain()] == [("loss", "softplus", "osc"), ("pause", None, "osc")]


def test_osc_command_prints_only_the_answer_unless_all(served):
    """The server sends state to recent senders of controls as well: the answer is printed, the rest with --all."""
    server, inbox, client = served
    server.publish(ControlState(iteration=12, controls={"grid": 1}))
    done = run_cli("/uncanny/state", "--port", str(server.address[1]), "--wait", "1")
    assert done.returncode == 0 and "/uncanny/state/iteration 12" in done.stdout.splitlines()
    assert "/uncanny/view/grid 1" in done.stdout.splitlines()  # every control's value too
    feedback, _ = make_server(state_every=0.2)  # broadcasts to recent senders every 0.2 s
    try:
        feedback.publish(ControlState(iteration=5))
        port = str(feedback.address[1])
        done = run_cli("/uncanny/ping", "--port", port, "--wait", "2")
        assert done.returncode == 0 and done.stdout == "/uncanny/pong\n"
        done = run_cli("/uncanny/ping", "--port", port, "--wait", "2", "--all")  # the whole 2 s: a query's answer
        assert done.returncode == 0 and done.stdout.splitlines() == ["/uncanny/pong"]  # (queries join no feedback)
        done = run_cli("/uncanny/view/hud", "0", "--port", port, "--wait", "2", "--all")  # a control's sender: fed
        lines = done.stdout.splitlines()
        assert done.returncode == 0 and "/uncanny/state/iteration 5" in lines, lines
        done = run_cli("/uncanny/view/grid", "1", "--port", port, "--wait", "10", "--expect",
                       "/uncanny/state/iteration")
        assert done.returncode == 0 and done.stdout == "/uncanny/state/iteration 5\n"
    finally:
        feedback.stop()


def test_osc_command_is_a_health_check_that_fails_when_nothing_answers(served):
    server, inbox, client = served
    done = run_cli("/uncanny/ping", "--port", str(server.address[1]), "--expect", "/uncanny/nothing", "--wait", "1")
    assert done.returncode == 1 and done.stdout == ""
    assert "no /uncanny/nothing from 127.0.0.1:" in done.stderr and done.stderr.count("\n") == 1
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a port that receives and never answers
    silent.bind(("127.0.0.1", 0))
    with silent:
        done = run_cli("/uncanny/ping", "--port", str(silent.getsockname()[1]), "--wait", "1")
        assert done.returncode == 1 and done.stdout == "" and silent.recv(100).startswith(b"/uncanny/ping")
        assert f"no /uncanny/pong from 127.0.0.1:{silent.getsockname()[1]} within 1 s; is the installation " \
               "running" in done.stderr
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    nobody = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    for message in (["/uncanny/ping"], ["/uncanny/pause"]):  # a query, and an action with no answer of its own
        done = run_cli(*message, "--port", str(nobody), "--wait", "1")
        assert done.returncode == 1 and done.stdout == "" and done.stderr.count("\n") == 1, done
        assert f"from 127.0.0.1:{nobody} within 1 s; is the installation running" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["uncanny/ping"], "an address must start with '/'"),
    (["/uncanny/ping", "--expect", "pong"], "e.g. /uncanny/ping; got 'pong'"),
    (["/uncanny/ping", "i:one"], "'i:one': 'one' is not an integer"),
    (["/uncanny/ping", "--host", "no-such-host.invalid"], "cannot resolve 'no-such-host.invalid'"),
])
def test_osc_command_bad_input_is_one_line_and_exit_2(args, message):
    done = run_cli(*args, "--wait", "0")
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1


def test_the_dispatcher_maps_exactly_the_table(served):
    server, inbox, client = served
    assert sorted(server.addresses()) == sorted(s.address for s in osc_specs())


def test_control_service_builds_what_the_osc_table_asks_for():
    from page_server import free_port, get_json

    http_port = free_port()
    control = ControlService(OscConfig(host="127.0.0.1", port=0, state_every=0.0, advertise=False),
                             http=HttpConfig(host="127.0.0.1", port=http_port))
    with control:
        client = Client(control.osc.address)
        try:
            control.publish(ControlState(iteration=3, controls={"grid": 1}))
            client.send("/uncanny/view/grid", 0)
            client.sync()
            assert [(a.name, a.value) for a in control.inbox.drain()] == [("grid", 0)]
            assert get_json(f"http://127.0.0.1:{http_port}/uncanny/state/iteration?VALUE") == (200, {"VALUE": [3]})
            assert get_json(f"http://127.0.0.1:{http_port}/?HOST_INFO")[1]["OSC_PORT"] == control.osc.address[1]
            control.failed(Action("reset", None, "osc", client.address), "engine: not running")
            assert client.expect("/uncanny/error") == ["engine: not running"]
            assert control.describe() == [control.osc.describe(), control.http.describe()]
            assert f"http://127.0.0.1:{http_port}/ui/" in control.describe()[1]
        finally:
            client.close()
    off = ControlService(OscConfig(enabled=False, advertise=False), http=HttpConfig(port=0))
    with off:
        assert off.osc is None and off.http is None and off.describe()[0].startswith("OSC off")
        assert off.describe()[1].startswith("no HTTP server")
        off.inbox.put(action("reset"))  # the keys still have their inbox
        off.failed(action("reset"), "ignored: no OSC")
        assert [a.name for a in off.inbox.drain()] == ["reset"]


def test_a_flood_of_bad_input_is_logged_and_answered_at_a_bounded_rate(served, caplog):
    from installation.control.osc import ERROR_BURST, ERROR_RATE

    server, inbox, client = served
    caplog.set_level("WARNING", logger="installation.control.osc")
    start = time.monotonic()
    for _ in range(6):
        for _ in range(50):  # in bursts the kernel's receive buffer holds, so none is lost
            client.send("/uncanny/lr", float("nan"))
        client.sync()
    elapsed = time.monotonic() - start
    assert server.stats["invalid"] == 300
    errors = sum(1 for address, _ in client.backlog if address == "/uncanny/error")
    assert 1 <= errors <= ERROR_BURST + ERROR_RATE * elapsed + 1
    lines = [r for r in caplog.records if "invalid from 127.0.0.1" in r.getMessage()]
    assert len(lines) == 1  # one line per sender and kind every LOG_EVERY seconds, however many arrive


# ------------------------------------------------------------------------------------------------ buttons
TRIGGERS = [s for s in osc_specs() if s.trigger]
BUTTONS = [(1.0, 0.0), (True, False), (1, 0)]  # TouchOSC and most bridges; T/F; int 1/0


@pytest.mark.parametrize("press, release", BUTTONS, ids=["float 1.0 then 0.0", "T then F", "int 1 then 0"])
def test_a_button_on_every_trigger_address_acts_once(served, press, release):
    server, inbox, client = served
    server.publish(ControlState(snapshots=(0, 10)))  # nothing here changes on its own: no feedback, only answers
    for spec in TRIGGERS:
        client.send_typed(spec.address, press)
        client.send_typed(spec.address, release)
    client.sync()
    assert [(a.name, a.value) for a in inbox.drain()] == [(s.name, None) for s in TRIGGERS if s.kind != "query"]
    assert server.stats["released"] == len(TRIGGERS) and server.stats["invalid"] == 0
    replies = client.received()
    assert replies.count("/uncanny/snapshots") == replies.count("/uncanny/state/iteration") == 1
    assert "/uncanny/error" not in replies  # a release is ignored silently


def test_rewind_takes_a_button_or_an_iteration(served):
    server, inbox, client = served
    for args in [(1.0,), (0.0,), (True,), (False,), (1,), (0,), (), (500.0,), (2,)]:
        client.send_typed("/uncanny/rewind", *args)
    client.sync()
    assert [(a.name, a.value) for a in inbox.drain()] == [("rewind", None)] * 4 + [("rewind", 500), ("rewind", 2)]
    assert [make_action(BY_NAME["rewind"], [v]).engine_command().name for v in (1.0, 500.0)] == ["back", "rewind"]


def test_a_float_control_set_with_t_or_an_int_echoes_a_float(served):
    server, inbox, client = served
    client.send_typed("/uncanny/view/blackout", True)
    client.send_typed("/uncanny/speed", 3)
    client.sync()
    values = [a.value for a in inbox.drain()]
    assert values == [(1.0, 0.0), 3.0] and type(values[0][0]) is float and type(values[1]) is float
    server.publish(ControlState(controls={"blackout": 1, "speed": 3, "grid": True}))  # held as ints by the loop
    for address, kind in [("/uncanny/view/blackout", float), ("/uncanny/speed", float), ("/uncanny/view/grid", int)]:
        value = client.expect(address)[0]
        assert type(value) is kind and value in (1, 3)


# ------------------------------------------------------------------------------------------------ no amplification
def test_a_flood_of_state_queries_gets_a_bounded_number_of_answers_and_subscribes_nobody():
    from installation.control.osc import ANSWER_BURST, ANSWER_RATE, ERROR_BURST, ERROR_RATE

    server, inbox = make_server(state_every=0.2)
    client = Client(server.address)
    try:
        controls = {"lr": 0.001, "grid": 0}
        server.publish(ControlState(iteration=5, controls=controls))
        start = time.monotonic()
        for _ in range(10):
            for _ in range(50):  # in bursts the kernel's receive buffer holds: all 500 arrive
                client.send("/uncanny/state")
            client.sync()
        elapsed = time.monotonic() - start
        replies = [a for a in client.received() if a != "/uncanny/pong"]
        answers = replies.count("/uncanny/state/iteration")
        assert server.stats["queries"] == 500 + 10 and server.stats["too often"] == 500 - answers
        size = len(STATE_FIELDS) + len(controls)  # datagrams in one answer
        assert 1 <= answers <= (ANSWER_BURST + ANSWER_RATE * elapsed) / size
        assert len(replies) <= answers * size + ERROR_BURST + ERROR_RATE * elapsed + 1
        assert client.address not in server.recipients()  # a question does not subscribe to the periodic state
    finally:
        client.close()
        server.stop()


def test_refused_fader_values_are_echoed_at_a_bounded_rate(served):
    from installation.control.osc import ECHO_BURST, ECHO_RATE

    server, inbox, client = served
    server.publish(ControlState(controls={"walk_truncation": 0.7}))
    start = time.monotonic()
    for _ in range(6):
        for _ in range(50):
            client.send("/uncanny/walk/truncation", 5.0)
        client.sync()
    echoes = client.received().count("/uncanny/walk/truncation")
    assert server.stats["invalid"] == 300 and 1 <= echoes <= ECHO_BURST + ECHO_RATE * (time.monotonic() - start) + 1


# ------------------------------------------------------------------------------------------------ the truth
def test_an_engine_refusal_reaches_the_sender_of_that_command_only(served):
    server, inbox, client = served
    other = Client(server.address)
    try:
        client.send("/uncanny/batch", 8)
        client.sync()
        other.send("/uncanny/back")  # the newest engine action comes from someone else
        other.sync()
        batch, back = inbox.drain()
        refused = ControlState(refusals=((batch.id, "rejected command: batch 8 is too many for this device"),))
        server.publish(refused)
        assert client.expect("/uncanny/error") == ["rejected command: batch 8 is too many for this device"]
        server.publish(refused)  # the same refusal in the next state: answered once
        server.publish(ControlState(refusals=((back.id + 1000, "rejected command: not ours"),)))
        client.sync()
        other.sync()
        assert "/uncanny/error" not in client.received() + other.received()
    finally:
        other.close()


def test_feedback_reports_where_a_jump_landed_though_training_moved_on(served):
    server, inbox, client = served
    client.send("/uncanny/view/hud", 1)  # a control: now a recent sender
    client.sync()
    server.publish(ControlState(iteration=40))
    assert client.expect("/uncanny/state/iteration", lambda a: a == [40]) == [40]
    server.publish(ControlState(iteration=2, branch=1, landed=0))  # a reset, then two steps before this state
    assert client.expect("/uncanny/state/iteration") == [0]
    assert client.expect("/uncanny/state/iteration") == [2]
    server.publish(ControlState(iteration=0, branch=2, landed=0, paused=True))  # reset again: 0 once more, paused
    assert client.expect("/uncanny/state/iteration") == [0]


# ------------------------------------------------------------------------------------------------ IPv6
def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")


@needs_ipv6
def test_host_dual_stack_serves_ipv4_and_ipv6_on_one_socket():
    listener = Client(("127.0.0.1", 9))
    server, inbox = make_server(host="::", feedback=(f"127.0.0.1:{listener.address[1]}",), state_every=0.2)
    v4, v6 = Client(("127.0.0.1", server.address[1])), Client(("::1", server.address[1]))
    try:
        assert "(IPv4 and IPv6)" in server.describe()
        v4.send("/uncanny/reset")
        v4.sync()
        v6.send("/uncanny/snapshot")
        v6.sync()
        assert [(a.name, a.reply_to[0]) for a in inbox.drain()] == [("reset", "::ffff:127.0.0.1"), ("snapshot", "::1")]
        server.publish(ControlState(fps=12.5))
        assert listener.expect("/uncanny/state/fps") == [12.5]  # an IPv4 feedback target through the same socket
    finally:
        for client in (listener, v4, v6):
            client.close()
        server.stop()


@needs_ipv6
def test_an_ipv6_network_in_allow_adds_an_ipv6_socket_at_the_same_port():
    server, inbox = make_server(allow=("127.0.0.0/8", "::1/128"))
    v6 = Client(("::1", server.address[1]))
    try:
        assert f"127.0.0.1:{server.address[1]} and [::1]:{server.address[1]}" in server.describe()
        v6.send("/uncanny/rewind", 1.0)
        v6.sync()
        assert [(a.name, a.value, a.reply_to[0]) for a in inbox.drain()] == [("rewind", None, "::1")]
    finally:
        v6.close()
        server.stop()
    ipv4_only, _ = make_server(allow=("127.0.0.0/8",))
    try:
        assert "[::1]" not in ipv4_only.describe()
    finally:
        ipv4_only.stop()


@needs_ipv6
def test_an_ipv6_port_that_cannot_be_bound_leaves_ipv4_serving_with_one_warning(caplog):
    from installation.control.osc import OscError

    holder = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)  # holds [::1]:P, P taken from the system
    holder.bind(("::1", 0))
    port = holder.getsockname()[1]
    try:
        try:
            server, inbox = make_server(port=port, allow=("127.0.0.0/8", "::1/128"))
        except OscError:
            pytest.skip(f"port {port} is taken on IPv4 as well")
        client = Client(server.address)
        try:
            client.sync()
            assert "[::1]" not in server.describe()
            assert any("cannot be bound" in r.getMessage() and "IPv4 only" in r.getMessage() for r in caplog.records)
        finally:
            client.close()
            server.stop()
    finally:
        holder.close()
