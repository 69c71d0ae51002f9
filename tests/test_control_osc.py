"""The OSC server over real UDP sockets on loopback: actions into the inbox, replies, feedback, bad input, fuzz.

Ordering makes the waits exact: the server handles datagrams one at a time in arrival order, so once the pong
of a ping sent after some datagrams is back, those datagrams have been handled.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from installation.control.actions import BY_ADDRESS, Action, action, osc_specs
from installation.control.docs import osc_markdown, table_addresses
from installation.control.inbox import Inbox
from installation.control.osc import OscServer
from installation.control.oscquery import OscQueryServer, methods
from installation.control.packets import build_message
from installation.control.service import ControlService
from installation.control.state import STATE_FIELDS, ControlState
from installation.control.config import OscConfig

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
        ("too many arguments", build_message("/uncanny/reset", 1), "takes 0 arguments"),
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
    assert {"malformed", "invalid", "future", "pattern", "too large", "unknown address"} <= set(server.stats)


def test_feedback_reaches_recent_senders_on_change_and_echoes_controls(served):
    server, inbox, client = served
    client.sync()  # now a recent sender
    server.publish(ControlState(iteration=7, status="running", controls={"lr": 0.001}))
    assert client.expect("/uncanny/state/iteration", lambda a: a == [7]) == [7]
    assert client.expect("/uncanny/lr") == [pytest.approx(0.001)]
    server.publish(ControlState(iteration=8, status="paused", paused=True, controls={"lr": 0.001}))
    assert client.expect("/uncanny/state/status", lambda a: a == ["paused"])
    assert client.expect("/uncanny/state/paused", lambda a: a == [1])


def test_feedback_sends_every_published_value_of_a_changed_field_in_order(served):
    """A reset publishes iteration 0 and, a moment later, 1: a controller must see the 0 however close they are."""
    server, inbox, client = served
    client.sync()
    for iteration in (40, 41, 0, 1):
        server.publish(ControlState(iteration=iteration, shown_iteration=iteration))
    for field in ("iteration", "shown_iteration"):
        seen = []
        while seen[-1:] != [1]:
            seen += client.expect(f"/uncanny/state/{field}")
        assert seen == [40, 41, 0, 1]


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


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_oscquery_tree_over_http_matches_the_dispatcher_and_the_docs(served):
    server, inbox, client = served
    server.publish(ControlState(iteration=5, controls={"lr": 0.0005, "walk_truncation": 0.7}))
    query = OscQueryServer("127.0.0.1", 0, server.address[1], lambda: server.state, ("127.0.0.0/8",))
    query.start()
    base = f"http://127.0.0.1:{query.address[1]}"
    try:
        status, tree = get_json(base + "/")
        assert status == 200 and tree["FULL_PATH"] == "/"
        assert sorted(methods(tree)) == sorted(server.addresses()) == sorted(table_addresses(osc_markdown()))
        lr = tree["CONTENTS"]["uncanny"]["CONTENTS"]["lr"]
        assert lr["TYPE"] == "f" and lr["RANGE"] == [{"MIN": 0.0, "MAX": 1.0}] and lr["VALUE"] == [0.0005]
        state = tree["CONTENTS"]["uncanny"]["CONTENTS"]["state"]
        assert state["TYPE"] == "N" and set(state["CONTENTS"]) == set(STATE_FIELDS)
        assert state["CONTENTS"]["iteration"] == {"FULL_PATH": "/uncanny/state/iteration", "TYPE": "i",
                                                  "ACCESS": 1, "DESCRIPTION": "training iteration", "VALUE": [5]}
        status, info = get_json(base + "/?HOST_INFO")
        assert status == 200 and info["NAME"] == "uncanny" and info["OSC_PORT"] == server.address[1]
        assert get_json(base + "/?HOST_INFO=1")[1] == info  # ossia score's form
        assert get_json(base + "/uncanny/walk/truncation?VALUE") == (200, {"VALUE": [0.7]})
        assert get_json(base + "/uncanny/loss?RANGE") == (200, {"RANGE": [{"VALS": ["logit", "softplus", "log"]}]})
        assert get_json(base + "/uncanny/nothing")[0] == 404
        assert get_json(base + "/uncanny/lr?COLOUR")[0] == 400
    finally:
        query.stop()


def test_oscquery_refuses_clients_outside_the_allowlist():
    query = OscQueryServer("127.0.0.1", 0, 8000, ControlState, ("10.0.0.0/8",))
    query.start()
    try:
        assert get_json(f"http://127.0.0.1:{query.address[1]}/")[0] == 403
    finally:
        query.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "osc", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_osc_command_sends_and_prints_replies(served):
    server, inbox, client = served
    server.publish(ControlState(snapshots=(0, 50)))
    done = run_cli("/uncanny/snapshots", "--port", str(server.address[1]), "--wait", "1")
    assert done.returncode == 0 and done.stdout == "/uncanny/snapshots 0 50\n"
    done = run_cli("/uncanny/lr", "f:nan", "--port", str(server.address[1]), "--wait", "1")
    assert done.returncode == 0 and done.stdout.startswith('/uncanny/error "/uncanny/lr: rate expects a finite')
    done = run_cli("/uncanny/loss", "softplus", "--port", str(server.address[1]), "--wait", "0")
    assert done.returncode == 0
    client.sync()
    assert [(a.name, a.value, a.source) for a in inbox.drain()] == [("loss", "softplus", "osc")]


@pytest.mark.parametrize("args, message", [
    (["uncanny/ping"], "the address must start with '/'"),
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
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    http_port = probe.getsockname()[1]
    probe.close()
    control = ControlService(OscConfig(host="127.0.0.1", port=0, state_every=0.0, oscquery_port=http_port))
    with control:
        client = Client(control.osc.address)
        try:
            control.publish(ControlState(iteration=3, controls={"grid": 1}))
            client.send("/uncanny/view/grid", 0)
            client.sync()
            assert [(a.name, a.value) for a in control.inbox.drain()] == [("grid", 0)]
            assert get_json(f"http://127.0.0.1:{http_port}/uncanny/state/iteration?VALUE") == (200, {"VALUE": [3]})
            control.failed(Action("reset", None, "osc", client.address), "engine: not running")
            assert client.expect("/uncanny/error") == ["engine: not running"]
            assert control.describe() == [control.osc.describe(), f"OSCQuery on http://127.0.0.1:{http_port}/"]
        finally:
            client.close()
    off = ControlService(OscConfig(enabled=False))
    with off:
        assert off.osc is None and off.query is None and off.describe()[0].startswith("OSC off")
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
