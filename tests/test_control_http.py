"""The HTTP server over real sockets on loopback: OSCQuery as clients read it (HTTP/1.1, HEAD, RANGE held to the OSC
dispatcher over real UDP), LISTEN with a real websocket client (the `websockets` package), zeroconf adverts found by
a real `zeroconf` browser, the status page's data from a run folder a real engine run made, and every kind of bad
request refused with one rate-limited line while the server goes on."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pythonosc.osc_message import OscMessage

from installation.control import http as http_module
from installation.control.actions import BY_ADDRESS
from installation.control.config import HttpConfig, OscConfig
from installation.control.docs import osc_markdown, table_addresses
from installation.control.http import HttpError, HttpServer
from installation.control.inbox import Inbox
from installation.control.oscquery import EXTENSIONS, find_node, methods
from installation.control.service import ControlService
from installation.control.state import ECHOED, STATE_FIELDS, ControlState
from installation.journey import read_metrics

sys.path.insert(0, str(Path(__file__).parent))
from osc_client import Client  # noqa: E402
from page_server import (WAIT, fetch, folder_view, free_port, get_json, make_run_folder, post_action,  # noqa: E402
                         wait_for)

STATE = ControlState(iteration=5, status="running", device="cpu", controls={"lr": 0.0005, "walk_truncation": 0.7,
                                                                            "blackout": 0.0, "grid": 0})


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run_folder(tmp_path_factory.mktemp("page"))


class Published:
    """What the live loop does to the server: publish a new state object now and then."""

    def __init__(self, state: ControlState = STATE) -> None:
        self.state = state


@pytest.fixture
def control() -> Iterator[ControlService]:
    service = ControlService(OscConfig(host="127.0.0.1", port=0, state_every=0.0, advertise=False),
                             http=HttpConfig(host="127.0.0.1", port=free_port()))
    service.publish(STATE)
    with service:
        yield service


def base_of(server: HttpServer) -> str:
    return f"http://127.0.0.1:{server.address[1]}"


def make_server(**config: Any) -> tuple[HttpServer, Published, Inbox]:
    published, inbox = Published(), Inbox()
    folder = config.pop("folder", None)
    server = HttpServer(HttpConfig(**{"host": "127.0.0.1", "port": 0, **config}), lambda: published.state, inbox,
                        9000, folder)
    server.start()
    return server, published, inbox


@pytest.fixture
def served() -> Iterator[tuple[HttpServer, Published, Inbox]]:
    server, published, inbox = make_server()
    yield server, published, inbox
    server.stop()


def raw(port: int, data: bytes, wait: float = WAIT) -> bytes:
    """Send bytes on a fresh connection; everything the server sends back until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and _complete(received):
                    break
        except TimeoutError:
            pass
        return received


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return head.startswith(b"HTTP/1.1 204") or head.startswith(b"HTTP/1.1 304")


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# ------------------------------------------------------------------------------------------------ OSCQuery
def test_the_tree_matches_the_dispatcher_and_the_docs(control):
    base = base_of(control.http)
    status, tree = get_json(base + "/")
    assert status == 200 and tree["FULL_PATH"] == "/"
    assert sorted(methods(tree)) == sorted(control.osc.addresses()) == sorted(table_addresses(osc_markdown()))
    lr = tree["CONTENTS"]["uncanny"]["CONTENTS"]["lr"]
    assert lr == {"FULL_PATH": "/uncanny/lr", "TYPE": "f", "ACCESS": 3, "RANGE": [{"MIN": 0.0, "MAX": 1.0}],
                  "VALUE": [0.0005], "DESCRIPTION": "learning rate of the synthesis network"}
    state = tree["CONTENTS"]["uncanny"]["CONTENTS"]["state"]
    assert state["TYPE"] == "N" and state["ACCESS"] == 2 and set(state["CONTENTS"]) == set(STATE_FIELDS)
    assert state["CONTENTS"]["iteration"] == {"FULL_PATH": "/uncanny/state/iteration", "TYPE": "i", "ACCESS": 1,
                                              "DESCRIPTION": "training iteration", "VALUE": [5]}
    info = get_json(base + "/?HOST_INFO")[1]
    assert info == {"NAME": "uncanny", "OSC_PORT": control.osc.address[1], "OSC_TRANSPORT": "UDP",
                    "EXTENSIONS": EXTENSIONS}
    assert info["EXTENSIONS"]["LISTEN"] is True and info["EXTENSIONS"]["VALUE"] is True
    assert get_json(base + "/?HOST_INFO=1")[1] == info  # ossia score's form
    assert get_json(base + "/uncanny/walk?HOST_INFO")[1] == info  # the path does not matter
    assert get_json(base + "/uncanny/walk/truncation?VALUE") == (200, {"VALUE": [0.7]})
    assert get_json(base + "/uncanny/loss?RANGE") == (200, {"RANGE": [{"VALS": ["logit", "softplus", "log"]}]})


def test_access_says_what_can_be_read_and_absent_attributes_answer_204(control):
    base = base_of(control.http)
    tree = get_json(base + "/")[1]
    for address in methods(tree):  # readable: the controls whose applied value the live loop publishes
        assert find_node(tree, address)["ACCESS"] == (3 if BY_ADDRESS[address].name in ECHOED else 2), address
    for address in ("/uncanny/reset", "/uncanny/rewind", "/uncanny/record/start", "/uncanny/record/loop"):
        assert find_node(tree, address)["ACCESS"] == 2  # write-only: nothing to read back
        assert fetch(f"{base}{address}?VALUE")[:3:2] == (204, b"")
    assert fetch(base + "/uncanny/state/loss?VALUE")[0] == 204  # readable, but not measured yet
    assert fetch(base + "/uncanny/lr?UNIT")[0] == 204  # an attribute of the proposal this server leaves out
    assert fetch(base + "/uncanny/reset?RANGE")[0] == 204  # a trigger has no range
    assert get_json(base + "/uncanny/lr?COLOUR")[0] == 400  # not an attribute at all
    assert get_json(base + "/uncanny/nothing")[0] == 404
    assert get_json(base + "/uncanny/nothing?VALUE")[0] == 404


def float32(value: float) -> float:
    return struct.unpack(">f", struct.pack(">f", value))[0]


def neighbour(value: float | int, tag: str, up: bool) -> float | int:
    if tag == "i":
        return value + (1 if up else -1)
    return float(np.nextafter(np.float32(value), np.float32(np.inf if up else -np.inf)))


def test_every_range_is_exactly_what_the_dispatcher_accepts_over_udp(control):
    """For each ranged argument: MIN and MAX (sent as an OSC client sends them: i or 32-bit f) are accepted, the
    next value outside each is refused; the exclusive minima included. (A button's 0, its release, is taken and
    does nothing: test_control_osc.py has the buttons.)"""
    tree = get_json(base_of(control.http) + "/")[1]
    client = Client(control.osc.address)
    checked = 0
    try:
        for address in methods(tree):
            node, spec = find_node(tree, address), BY_ADDRESS[address]
            args = [a for a in spec.args if a.advertised]
            ranges = node.get("RANGE", [])
            if not ranges:
                continue
            least = [r["VALS"][0] if r and "VALS" in r else r["MIN"] if r and "MIN" in r else 0 for r in ranges]
            for index, (arg, bounds) in enumerate(zip(args, ranges)):
                for name, inside in (("MIN", True), ("MAX", True)):
                    if not bounds or name not in bounds:
                        continue
                    edge = bounds[name]
                    assert isinstance(edge, int) if arg.tag == "i" else float32(edge) == edge, (address, name)
                    for value, accepted in ((edge, True), (neighbour(edge, arg.tag, name == "MAX"), False)):
                        sent = least[:index] + [value] + least[index + 1:]
                        client.send(address, *sent)
                        client.sync()
                        actions = control.inbox.drain()
                        release = arg.button and value == 0  # a button's release: taken, and does nothing
                        assert bool(actions) == (accepted and not release), (address, sent, actions)
                        checked += 1
    finally:
        client.close()
    assert checked >= 40  # every fader, the batch, the seed, the walk, the loop export ...


def test_http11_keeps_the_connection_and_head_has_no_body(served):
    server, published, inbox = served
    port = server.address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        for path in (b"/uncanny/state/iteration?VALUE", b"/?HOST_INFO"):
            sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while not (b"\r\n\r\n" in received and _complete(received)):
                received += sock.recv(65536)
            assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    head = raw(port, b"HEAD /uncanny/lr HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert head.startswith(b"HTTP/1.1 200") and length > 50 and head.endswith(b"\r\n\r\n")  # headers, no body
    assert fetch(base_of(server) + "/uncanny/lr", method="HEAD")[:3:2] == (200, b"")


# ------------------------------------------------------------------------------------------------ LISTEN
def osc(frame: bytes) -> tuple[str, list[Any]]:
    message = OscMessage(frame)
    return message.address, list(message.params)


def test_listen_pushes_changes_to_a_real_websocket_client(served, caplog):
    from websockets.sync.client import connect

    server, published, inbox = served
    caplog.set_level("WARNING", logger="installation.control.http")
    url = f"ws://127.0.0.1:{server.address[1]}/"
    with connect(url, open_timeout=WAIT) as ws, connect(url, open_timeout=WAIT) as other:
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/uncanny/state/iteration"}))
        assert osc(ws.recv(WAIT)) == ("/uncanny/state/iteration", [5])  # the value now, at once
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/uncanny/view/blackout"}))
        assert osc(ws.recv(WAIT)) == ("/uncanny/view/blackout", [0.0])
        other.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/uncanny/state/phase"}))
        assert osc(other.recv(WAIT)) == ("/uncanny/state/phase", ["off"])
        for iteration in (6, 7, 8):
            published.state = dataclasses.replace(published.state, iteration=iteration)
            server.notify()
            assert osc(ws.recv(WAIT)) == ("/uncanny/state/iteration", [iteration])
        published.state = dataclasses.replace(published.state, controls={**STATE.controls, "blackout": 1.0})
        server.notify()
        assert osc(ws.recv(WAIT)) == ("/uncanny/view/blackout", [1.0])
        # bad frames are ignored with one line each, and the socket stays open
        for frame in ("not json", json.dumps({"COMMAND": "SUBSCRIBE", "DATA": "/x"}),
                      json.dumps({"COMMAND": "LISTEN", "DATA": "/uncanny/reset"}), json.dumps([1, 2])):
            ws.send(frame)
        ws.send(b"\x00\x01binary")
        ws.send(json.dumps({"COMMAND": "IGNORE", "DATA": "/uncanny/state/iteration"}))
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/uncanny/state/cycle"}))
        assert osc(ws.recv(WAIT)) == ("/uncanny/state/cycle", [0])  # the IGNORE before it was handled too
        published.state = dataclasses.replace(published.state, iteration=9, cycle=1, phase="hold")
        server.notify()
        assert osc(ws.recv(WAIT)) == ("/uncanny/state/cycle", [1])  # not the iteration: ignored
        assert osc(other.recv(WAIT)) == ("/uncanny/state/phase", ["hold"])  # the other client only its own
        with pytest.raises(TimeoutError):
            ws.recv(0.5)
    refusals = [r.getMessage() for r in caplog.records if "websocket from 127.0.0.1" in r.getMessage()]
    assert refusals and "ignored: the commands are" in refusals[0] and len(refusals) == 1  # rate-limited
    assert server.stats["websocket"] == 5


def test_a_websocket_frame_over_the_limit_closes_only_that_socket(served):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    server, published, inbox = served
    url = f"ws://127.0.0.1:{server.address[1]}/"
    with connect(url, open_timeout=WAIT) as ws, connect(url, open_timeout=WAIT) as other:
        ws.send("x" * (http_module.MAX_FRAME + 1))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(WAIT)
        assert closed.value.rcvd.code == 1009  # message too big
        other.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/uncanny/state/iteration"}))
        assert osc(other.recv(WAIT)) == ("/uncanny/state/iteration", [5])


def test_random_websocket_frames_never_stop_the_server(served):
    """The websocket fuzz: random text and binary frames, then a LISTEN on the same socket still works."""
    from websockets.sync.client import connect

    server, published, inbox = served
    rng = np.random.default_rng(23)
    with connect(f"ws://127.0.0.1:{server.address[1]}/", open_timeout=WAIT) as ws:
        for _ in range(500):
            data = rng.integers(0, 256, rng.integers(0, 200), dtype=np.uint8).tobytes()
            ws.send(data if rng.random() < 0.5 else data.decode("latin-1"))
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/uncanny/state/iteration"}))
        assert osc(ws.recv(WAIT)) == ("/uncanny/state/iteration", [5])
    assert fetch(base_of(server) + "/?HOST_INFO")[0] == 200


# ------------------------------------------------------------------------------------------------ zeroconf
def test_a_zeroconf_browser_on_loopback_finds_both_adverts_and_their_goodbye():
    from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

    from installation.control.advertise import OSC_SERVICE, OSCQUERY_SERVICE

    http_port = free_port()
    service = ControlService(OscConfig(host="127.0.0.1", port=0, state_every=0.0),
                             http=HttpConfig(host="127.0.0.1", port=http_port))
    seen: dict[str, set[str]] = {"added": set(), "removed": set()}
    lock = threading.Lock()

    def changed(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        with lock:
            seen["added" if state_change is ServiceStateChange.Added else "removed"].add(name)

    browser_zeroconf = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    browser = ServiceBrowser(browser_zeroconf, [OSCQUERY_SERVICE, OSC_SERVICE], handlers=[changed])
    try:
        with service:
            advertiser, = service.advertisers
            names = wait_for(lambda: len(advertiser.names) == 2 and advertiser.names, "registration")
            assert any("zeroconf: announcing _osc._udp port" in line for line in service.describe())
            wait_for(lambda: set(names) <= seen["added"], f"the browser seeing {names}")
            info = browser_zeroconf.get_service_info(OSCQUERY_SERVICE, names[1], timeout=int(WAIT * 1000))
            # its address (beside a running installation that advertises on every interface, the browser's cache
            # holds that one's addresses too for the same host name)
            assert info.port == http_port and "127.0.0.1" in info.parsed_addresses()
            assert names[1].startswith("uncanny on ")
            osc_info = browser_zeroconf.get_service_info(OSC_SERVICE, names[0], timeout=int(WAIT * 1000))
            assert osc_info.port == service.osc.address[1]
        wait_for(lambda: set(names) <= seen["removed"], "the goodbye")
    finally:
        browser.cancel()
        browser_zeroconf.close()


def test_no_advert_when_advertise_is_off():
    service = ControlService(OscConfig(host="127.0.0.1", port=0, advertise=False),
                             http=HttpConfig(host="127.0.0.1", port=free_port()))
    with service:
        assert service.advertisers == [] and not any("zeroconf" in line for line in service.describe())


# ------------------------------------------------------------------------------------------------ the page's data
def test_the_page_shows_a_real_run_folder(run_folder):
    server, published, inbox = make_server(folder=folder_view(run_folder))
    base = base_of(server)
    try:
        status, _, page = fetch(base + "/ui/")
        assert status == 200 and b"<title>uncanny" in page and b'src="page.js"' in page
        assert fetch(base + "/ui")[0] == 200  # redirected to /ui/
        for asset, kind in (("page.js", "text/javascript"), ("page.css", "text/css")):
            status, headers, body = fetch(f"{base}/ui/{asset}")
            assert status == 200 and headers["Content-Type"].startswith(kind) and len(body) > 1000
        state = get_json(base + "/ui/api/state")[1]
        assert state["state"]["iteration"] == 5 and state["state"]["controls"]["blackout"] == 0.0
        assert state["token"] is False and state["osc_port"] == 9000 and state["state"]["loss"] is None

        journey = get_json(base + "/ui/api/journey")[1]
        metrics = read_metrics(run_folder / "metrics.jsonl")
        assert journey["iteration"] == [m["iteration"] for m in metrics] == list(range(21))
        assert journey["probe_d"] == pytest.approx([m["probe_d"] for m in metrics])
        assert journey["loss"][1:] == pytest.approx([m["loss"] for m in metrics][1:])

        events = get_json(base + "/ui/api/events")[1]
        kinds = [e["event"] for e in events["events"]]
        assert "start" in kinds and "snapshot" in kinds
        assert events["log"][-1].endswith("line 59") and len(events["log"]) == 40

        files = {f["name"]: f for f in get_json(base + "/ui/api/files")[1]["files"]}
        assert set(files) == {"live-20261206-101500.mp4", "contact_sheet.png", "journey.png"}  # no .partial
        video = files["live-20261206-101500.mp4"]
        assert video["folder"] == "recordings" and video["url"] == "/ui/files/recordings/live-20261206-101500.mp4"
        status, headers, body = fetch(base + video["url"])
        assert status == 200 and body == (run_folder / "recordings" / video["name"]).read_bytes()
        assert headers["Content-Disposition"] == "attachment; filename*=UTF-8''live-20261206-101500.mp4"
        status, headers, body = fetch(base + files["journey.png"]["url"])
        assert status == 200 and Image.open(io.BytesIO(body)).size == (960, 720)
    finally:
        server.stop()


def test_the_journey_follows_rewinds_and_compaction(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    metrics = run / "metrics.jsonl"

    def write(iterations: range, mode: str = "a") -> None:
        with open(metrics, mode) as file:
            file.writelines(json.dumps({"iteration": i, "probe_d": -i, "loss": i / 2, "diversity": 0.5}) + "\n"
                            for i in iterations)

    view = folder_view(run)
    assert view.journey()["iteration"] == []
    write(range(0, 30))
    with open(metrics, "a") as file:
        file.write('{"iteration": 30, "probe_d"')  # a line being written
    assert view.journey()["iteration"] == list(range(30))
    with open(metrics, "a") as file:
        file.write(': -30, "loss": 15, "diversity": 0.5}\n')
    write(range(10, 15))  # a rewind to 10: the future after it is gone
    journey = view.journey()
    assert journey["iteration"] == list(range(15)) and journey["probe_d"][-1] == -14
    write(range(100, 103), "w")  # compacted: a new, smaller file
    assert view.journey()["iteration"] == [100, 101, 102]
    write(range(103, 5000))
    assert len(view.journey()["iteration"]) == 600  # thinned for the plot, the newest kept
    assert view.journey()["iteration"][-1] == 4999


def test_the_picture_is_the_live_loops_when_watched_else_the_newest_thumbnail(run_folder):
    server, published, inbox = make_server(folder=folder_view(run_folder))
    picture = server.picture
    try:
        assert not picture.wanted(time.monotonic())  # nobody looks: the live loop reads no framebuffer
        status, headers, body = fetch(base_of(server) + "/ui/picture.jpg")
        assert status == 200 and Image.open(io.BytesIO(body)).size == (32, 24)  # the thumbnail, meanwhile
        assert headers["Cache-Control"] == "no-store"
        now = time.monotonic()
        assert picture.wanted(now)
        frame = np.zeros((720, 1280, 3), np.uint8)
        frame[:, :640] = (255, 0, 0)
        picture.offer(frame, now)
        assert not picture.wanted(now + 0.1)  # one offer per `every`
        body = fetch(base_of(server) + "/ui/picture.jpg")[2]
        shown = np.asarray(Image.open(io.BytesIO(body)))
        assert shown.shape == (360, 640, 3) and shown[180, 100, 0] > 200 and shown[180, 500, 0] < 50
    finally:
        server.stop()
    empty = HttpServer(HttpConfig(host="127.0.0.1", port=0), ControlState, Inbox(), None)
    with empty:
        assert fetch(base_of(empty) + "/ui/picture.jpg")[0] == 204  # nothing yet
        assert get_json(base_of(empty) + "/ui/api/files") == (200, {"files": []})
        assert "OSC_PORT" not in get_json(base_of(empty) + "/?HOST_INFO")[1]  # OSC is off


# ------------------------------------------------------------------------------------------------ actions
def test_actions_from_the_page_go_into_the_inbox_as_oscs_do(served):
    server, published, inbox = served
    base = base_of(server)
    assert post_action(base, "blackout", 1, 2.5) == (202, {"queued": "blackout"})
    assert post_action(base, "toggle_pause") == (202, {"queued": "toggle_pause"})
    assert post_action(base, "record_start") == (202, {"queued": "record_start"})
    assert [(a.name, a.value, a.source) for a in inbox.drain()] == [
        ("blackout", (1.0, 2.5), "web"), ("toggle_pause", None, "web"), ("record_start", None, "web")]
    status, reply = post_action(base, "blackout", 5)
    assert status == 400 and reply["error"].startswith("/uncanny/view/blackout: blackout level must be a finite")
    for name in ("quit", "fullscreen", "state", "volume"):  # key-only, queries, unknown: not from here
        assert post_action(base, name)[0] == 400
    assert inbox.drain() == [] and server.stats["actions"] == 3


def test_actions_need_the_token_when_one_is_set():
    server, published, inbox = make_server(token="s3cret-t0ken")
    base = base_of(server)
    try:
        assert post_action(base, "reset")[0] == 403
        assert post_action(base, "reset", token="wrong")[0] == 403
        assert post_action(base, "reset", token="s3cret-t0ken") == (202, {"queued": "reset"})
        assert [a.name for a in inbox.drain()] == ["reset"]
        assert get_json(base + "/ui/api/state")[1]["token"] is True
        assert get_json(base + "/")[0] == 200  # reading needs no token
        assert server.stats["no token"] == 2
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_requests_are_refused_each_with_one_rate_limited_line(served, caplog):
    server, published, inbox = served
    caplog.set_level("WARNING", logger="installation.control.http")
    base, port = base_of(server), server.address[1]
    assert get_json(base + "/ui/nothing")[0] == 404
    assert fetch(base + "/ui/api/state?" + "x" * 3000)[0] == 414
    assert status_of(raw(port, b"GARBAGE\r\n\r\n")) == 400
    assert status_of(raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n")) == 400
    assert status_of(raw(port, b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n")) in (400, 414)
    big = json.dumps({"action": "reset", "args": ["x" * 10000]}).encode()
    assert fetch(base + "/ui/api/action", big, {"Content-Type": "application/json"})[0] == 413
    assert fetch(base + "/ui/api/action", b"action=reset", {"Content-Type": "application/x-www-form-urlencoded"})[0] \
        == 415  # what a form on another site could send
    assert fetch(base + "/ui/api/action", b"{not json", {"Content-Type": "application/json"})[0] == 400
    assert fetch(base + "/ui/api/action", b"[1]", {"Content-Type": "application/json"})[0] == 400
    assert fetch(base + "/ui/api/action", b'{"action": "reset"}', {"Content-Type": "application/json",
                                                                   "Origin": "http://evil.example"})[0] == 403
    assert fetch(base + "/uncanny/lr", b"1", method="PUT")[0] == 405
    assert inbox.drain() == []
    for _ in range(50):  # a flood of one kind: one line
        assert get_json(base + "/uncanny/nothing")[0] == 404
    lines = [r.getMessage() for r in caplog.records]
    assert all("\n" not in line and "Traceback" not in line for line in lines)
    assert sum("not found from 127.0.0.1" in line for line in lines) == 1
    for kind in ("long url", "malformed request", "request entity too large", "not json", "malformed action",
                 "other site", "method not allowed"):
        assert sum(f"http: {kind} from 127.0.0.1" in line for line in lines) == 1, kind
    assert get_json(base + "/?HOST_INFO")[0] == 200  # and the server goes on


def test_downloads_are_only_the_listed_files(run_folder, caplog):
    caplog.set_level("WARNING", logger="installation.control.http")
    (run_folder / "recordings" / "passwd.mp4").symlink_to("/etc/passwd")
    server, published, inbox = make_server(folder=folder_view(run_folder))
    port = server.address[1]
    try:
        for target in (b"/ui/files/recordings/..%2F..%2Frun.json", b"/ui/files/run/..%2F..%2F..%2Fetc%2Fpasswd",
                       b"/ui/files/run/%2Fetc%2Fpasswd", b"/ui/files/recordings/../metrics.jsonl",
                       b"/ui/files/etc/passwd", b"/ui/files/run/metrics.jsonl", b"/ui/files/run/snapshots",
                       b"/ui/files/recordings/passwd.mp4", b"/ui/files/recordings/.hidden.mp4",
                       b"/ui/files/recordings/live-20261206-103000.mp4.partial", b"/ui/files/run/..",
                       b"/ui/files/run/%2e%2e%2frun.json"):
            response = raw(port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status_of(response) == 404 and b"root:" not in response, target
        assert fetch(f"{base_of(server)}/ui/files/run/contact_sheet.png")[0] == 200
    finally:
        server.stop()
        (run_folder / "recordings" / "passwd.mp4").unlink()
    lines = [r.getMessage() for r in caplog.records]
    assert any("path traversal from 127.0.0.1" in line for line in lines)


def test_clients_outside_the_allowlist_get_403():
    server, published, inbox = make_server(allow=("10.0.0.0/8",))
    try:
        assert get_json(base_of(server) + "/")[0] == 403
        assert post_action(base_of(server), "reset")[0] == 403 and inbox.drain() == []
        assert server.stats["refused client"] == 2
    finally:
        server.stop()


def test_slow_clients_never_hold_the_server(monkeypatch, caplog):
    """Slow-loris: connections that trickle a request, or its body, are closed after their time while others are
    answered; the thread count stays bounded."""
    monkeypatch.setattr(http_module, "IDLE_SECONDS", 1.5)
    monkeypatch.setattr(http_module, "BODY_SECONDS", 1.0)
    caplog.set_level("WARNING", logger="installation.control.http")
    threads = threading.active_count()
    server, published, inbox = make_server()
    port = server.address[1]
    try:
        loris = []
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            loris.append(sock)
        assert get_json(base_of(server) + "/?HOST_INFO")[0] == 200
        for sock in loris:  # each closed by the server after its idle time, unanswered
            sock.settimeout(WAIT)
            assert sock.recv(65536) == b""
            sock.close()
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            sock.sendall(b"POST /ui/api/action HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"action\"")  # and no more
            response = b""
            while not (b"\r\n\r\n" in response and _complete(response)):
                response += sock.recv(65536)
            assert status_of(response) == 408 and b"Connection: close" in response
        assert get_json(base_of(server) + "/?HOST_INFO")[0] == 200 and inbox.drain() == []
        assert threading.active_count() <= threads + 2  # the server's thread and its one worker
    finally:
        server.stop()
    assert any("http: slow body from 127.0.0.1" in r.getMessage() for r in caplog.records)


def test_connections_past_the_limit_are_answered_503_at_once(monkeypatch, caplog):
    monkeypatch.setattr(http_module, "MAX_CONNECTIONS", 4)
    caplog.set_level("WARNING", logger="installation.control.http")
    server, published, inbox = make_server()
    port = server.address[1]
    try:
        held = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(4)]
        wait_for(lambda: len(server._runner.server.connections) == 4, "four connections held")
        assert status_of(raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")) == 503
        held.pop().close()
        wait_for(lambda: len(server._runner.server.connections) == 3, "one let go")
        assert get_json(base_of(server) + "/?HOST_INFO")[0] == 200
        for sock in held:
            sock.close()
    finally:
        server.stop()
    assert any("http: busy from 127.0.0.1: over 4 connections" in r.getMessage() for r in caplog.records)


def test_a_taken_port_is_one_line():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(HttpError) as info:
            HttpServer(HttpConfig(host="127.0.0.1", port=holder.getsockname()[1]), ControlState, Inbox(), None)
    assert "\n" not in str(info.value) and "--http-port" in str(info.value)


def test_ipv4_and_ipv6_clients_on_every_interface_when_the_allowlist_names_ipv6():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    server = HttpServer(HttpConfig(host="0.0.0.0", port=0), lambda: STATE, Inbox(), None)
    with server:
        port = server.address[1]
        assert get_json(f"http://127.0.0.1:{port}/uncanny/state/iteration?VALUE") == (200, {"VALUE": [5]})
        assert get_json(f"http://[::1]:{port}/uncanny/state/iteration?VALUE") == (200, {"VALUE": [5]})
    v4 = HttpServer(HttpConfig(host="0.0.0.0", port=0, allow=("127.0.0.0/8",)), lambda: STATE, Inbox(), None)
    with v4:
        with pytest.raises(OSError):
            socket.create_connection(("::1", v4.address[1]), timeout=WAIT).close()


def test_stopping_closes_websockets_and_frees_the_port(served):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    server, published, inbox = served
    port = server.address[1]
    with connect(f"ws://127.0.0.1:{port}/", open_timeout=WAIT) as ws:
        start = time.monotonic()
        server.stop()
        server.stop()  # twice is fine
        with pytest.raises(ConnectionClosed):
            ws.recv(WAIT)
    assert time.monotonic() - start < WAIT
    again = HttpServer(HttpConfig(host="127.0.0.1", port=port), ControlState, Inbox(), None)  # at once
    again.stop()
    logging.getLogger(__name__).info("stopped in %.2f s", time.monotonic() - start)
