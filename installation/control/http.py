"""The HTTP server on the [http] port: OSCQuery for controllers and the technician's status page, on one port.

aiohttp (HTTP/1.1 with keep-alive and HEAD, and websockets) on one asyncio loop in a thread of its own:

    GET /, /uncanny/...        OSCQuery (control/oscquery.py): the tree, one node, ?ATTRIBUTE, ?HOST_INFO
    websocket on those paths   {"COMMAND": "LISTEN"|"IGNORE", "DATA": PATH} text frames; each listened value is
                               pushed as a binary frame of one OSC message when it changes (and once at LISTEN)
    GET /ui/                   the status page (control/page/), its data under /ui/api/ (state, journey, events,
                               files), /ui/picture.jpg and /ui/files/FOLDER/NAME (only what /ui/api/files lists)
    POST /ui/api/action        {"action": NAME, "args": [...]}: an Action into the inbox, validated as OSC's are
                               (`Authorization: Bearer TOKEN` when [http] token is set)

The display loop never waits on it: the live loop publishes a state object (a reference swap) and `notify()`s; a
request reads the newest state; file reading and JPEG encoding run on one worker thread. Everything is bounded:
MAX_CONNECTIONS connections (one more is answered 503 and closed), MAX_SOCKETS websockets, a connection idle (or
still sending its request) for IDLE_SECONDS is closed, a body has MAX_BODY bytes and BODY_SECONDS to arrive, a URL
MAX_URL characters. Every refusal (403 outside [http] allow, without the token or from another site's page; 404,
400, 408, 413, 414, 415, 503) is one log line, rate-limited per client and kind.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import socket
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from aiohttp import WSMsgType, web

from ..messages import RateLimitedLog, first_line
from .actions import BY_NAME, ActionError, make_action
from .advertise import own_addresses
from .config import HttpConfig
from .inbox import Inbox
from .osc import OscError
from .oscquery import READABLE, answer, values
from .packets import build_message
from .web import PictureFeed, RunFolderView, state_json

log = logging.getLogger(__name__)

PAGE = Path(__file__).resolve().parent / "page"
ASSETS = {"index.html": "text/html", "page.js": "text/javascript", "page.css": "text/css"}
MAX_CONNECTIONS = 64
MAX_SOCKETS = 32
IDLE_SECONDS = 15.0
BODY_SECONDS = 5.0
MAX_BODY = 4096  # bytes: an action is a few dozen
MAX_URL = 2048  # characters of the request target
MAX_FRAME = 4096  # bytes of a websocket frame from a client: LISTEN commands are short
MAX_QUEUED = 256  # pushes waiting for one websocket; a client that lets more pile up is closed
SEND_SECONDS = 10.0
PUSH_GAP = 0.02  # seconds: changes are gathered this long, so a state published every refresh costs 50 rounds a second
PUSH_CHECK = 1.0  # seconds: the state is compared this often even when nobody calls notify()
HEARTBEAT = 30.0  # seconds between websocket pings; a client that does not answer is dropped


class HttpError(OscError):
    """The HTTP server cannot start (port in use, bad address); one line."""


class HttpServer:
    """Serves `config.host:config.port` (bound in the constructor, HttpError if it cannot; port 0 here = any free
    one, see `.address`) from `state()`, the newest published state, and puts the page's Actions into `inbox`.
    `folder` is the run folder the page shows (None: no journey, events or files); `picture` the live loop's feed."""

    def __init__(self, config: HttpConfig, state: Callable[[], Any], inbox: Inbox, osc_port: int | None,
                 folder: RunFolderView | None = None, picture: PictureFeed | None = None) -> None:
        self.config, self.folder = config, folder
        self.picture = picture if picture is not None else PictureFeed()
        self.stats: Counter[str] = Counter()  # one count per refused kind, and "actions"
        self._state, self._inbox, self._osc_port = state, inbox, osc_port
        self._networks = [ipaddress.ip_network(n, strict=False) for n in config.allow]
        self._refusals = RateLimitedLog(log, "http")
        self._listeners: set[_Listener] = set()
        self._assets = {name: (PAGE / name).read_bytes() for name in ASSETS}
        self._loop = asyncio.new_event_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="http-files")
        self._loop.set_default_executor(self._executor)
        self._wake = asyncio.Event()
        self._servers: list[asyncio.base_events.Server] = []
        self._pusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app.router.add_get("/ui", self._to_page)
        app.router.add_get("/ui/", self._asset)
        app.router.add_get("/ui/{name:[a-z]+\\.(?:js|css|html)}", self._asset)
        app.router.add_get("/ui/api/state", self._api_state)
        app.router.add_get("/ui/api/journey", self._api_journey)
        app.router.add_get("/ui/api/events", self._api_events)
        app.router.add_get("/ui/api/files", self._api_files)
        app.router.add_post("/ui/api/action", self._api_action)
        app.router.add_get("/ui/picture.jpg", self._picture)
        app.router.add_get("/ui/files/{folder}/{name:.+}", self._download)
        app.router.add_get("/{path:.*}", self._oscquery)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0,
                                     keepalive_timeout=IDLE_SECONDS, lingering_time=BODY_SECONDS,
                                     logger=_ServerLog(self._refusals))
        try:
            self._loop.run_until_complete(self._runner.setup())
            sock = self._bind()
            self._servers.append(self._loop.run_until_complete(
                self._loop.create_server(self._connection, sock=sock, backlog=MAX_CONNECTIONS)))
        except OSError as error:
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()
            self._executor.shutdown()
            raise HttpError(f"cannot serve HTTP on {config.host}:{config.port} ({error.strerror or error}); another "
                            "program may hold the port: set [http] port or --http-port (0 = no HTTP server)") \
                from None
        self.address: tuple[str, int] = (config.host, sock.getsockname()[1])
        self._thread = threading.Thread(target=self._loop.run_forever, name="http", daemon=True)

    # ---------------------------------------------------------------------------------------- lifecycle
    def _bind(self) -> socket.socket:
        """A listening socket; on every interface it is dual-stack (IPv4 and IPv6) when [http] allow names an IPv6
        network and the system has IPv6."""
        host, port = self.config.host, self.config.port
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        dual = host == "0.0.0.0" and any(n.version == 6 for n in self._networks)
        try:
            sock = socket.socket(socket.AF_INET6 if dual else family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 here: IPv4 only
            dual, sock = False, socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart binds despite TIME_WAIT
            if dual:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::" if dual else host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def start(self) -> None:
        self._pusher = self._loop.create_task(self._push_forever())
        self._thread.start()

    def stop(self) -> None:
        """Close the sockets and the websockets, stop the thread; safe to call more than once."""
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            except Exception as error:  # a timeout or a failed close must not keep the installation from stopping
                log.warning("http: stopping the server: %s", first_line(error))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        else:
            self._loop.run_until_complete(self._shutdown())
        if not self._loop.is_running():
            self._loop.close()
        self._executor.shutdown(wait=False)

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for listener in list(self._listeners):
            await listener.ws.close(code=1001, message=b"server stopping")
        if self._pusher is not None:
            self._pusher.cancel()
            await asyncio.gather(self._pusher, return_exceptions=True)
        await self._runner.cleanup()

    def __enter__(self) -> HttpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def notify(self) -> None:
        """A new state was published: listened values that changed go out now (called by the display loop; costs a
        wake-up of this server's loop only while a websocket listens)."""
        if self._listeners:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop has stopped: nothing is listening any more
                pass

    def urls(self) -> list[str]:
        """Where a browser on the network finds the server: the bound address, or on every interface this machine's
        own addresses."""
        host, port = self.address
        if host not in ("0.0.0.0", "::"):
            return [f"http://{f'[{host}]' if ':' in host else host}:{port}/"]
        return [f"http://{h}:{port}/" for h in own_addresses()[:3]]

    def describe(self) -> str:
        """One line for the start-up log."""
        token = "; its buttons need [http] token" if self.config.token else ""
        return (f"status page on {', '.join(u + 'ui/' for u in self.urls())}{token} (OSCQuery and LISTEN on the same "
                f"port); accepting {', '.join(self.config.allow) or 'nobody'}")

    # ---------------------------------------------------------------------------------------- gatekeeping
    def _connection(self) -> asyncio.Protocol:
        if len(self._runner.server.connections) >= MAX_CONNECTIONS:  # type: ignore[union-attr]
            return _Busy(self._refuse_log)
        return self._runner.server()  # type: ignore[misc]

    def _allowed(self, peer: str) -> bool:
        try:
            ip = ipaddress.ip_address(peer.split("%")[0])
        except ValueError:
            return False
        ip = getattr(ip, "ipv4_mapped", None) or ip  # an IPv4 client seen through the dual-stack socket
        return any(ip in network for network in self._networks)

    def _refuse_log(self, peer: str, kind: str, text: str) -> None:
        self.stats[kind] += 1
        self._refusals(peer, kind, text)

    def _refuse(self, request: web.Request, status: int, kind: str, text: str) -> web.Response:
        self._refuse_log(request.remote or "?", kind, f"{request.method} {request.path[:80]}: {status} {text}")
        response = web.json_response({"error": text}, status=status)
        if status == 408:
            response.force_close()  # the rest of that body may still come: nothing after it could be parsed
        return response

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        if not self._allowed(request.remote or ""):
            return self._refuse(request, 403, "refused client", "not in [http] allow")
        if len(request.raw_path) > MAX_URL:
            return self._refuse(request, 414, "long url", f"the URL is over {MAX_URL} characters")
        origin = request.headers.get("Origin")
        changes = request.method not in ("GET", "HEAD") or "websocket" in request.headers.get("Upgrade", "").lower()
        if changes and origin and urlsplit(origin).netloc != request.host:
            return self._refuse(request, 403, "other site", f"a page from {origin[:80]} may not use this server")
        try:
            return await handler(request)
        except web.HTTPException as error:
            if error.status >= 400:
                self._refuse_log(request.remote or "?", error.reason.lower(),
                                 f"{request.method} {request.path[:80]}: {error.status} {error.reason}")
            raise

    # ---------------------------------------------------------------------------------------- OSCQuery
    async def _oscquery(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        status, body = answer(request.path, unquote(request.query_string), self._state(), self._osc_port)
        if status == 204:
            return web.Response(status=204)
        if status >= 400:
            return self._refuse(request, status, "not found" if status == 404 else "bad request",
                                body["error"] if body else "")
        return web.json_response(body, status=status)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if len(self._listeners) >= MAX_SOCKETS:
            return self._refuse(request, 503, "busy", f"{MAX_SOCKETS} websockets are open; try again later")
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_FRAME)
        await ws.prepare(request)
        listener = _Listener(ws, request.remote or "?")
        self._listeners.add(listener)
        sender = asyncio.create_task(listener.send_forever(self._refuse_log))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._command(listener, message.data)
                elif message.type == WSMsgType.BINARY:
                    where = f"udp port {self._osc_port}" if self._osc_port else "no port (OSC is off)"
                    self._refuse_log(listener.peer, "websocket", f"a binary frame ({len(message.data)} bytes) "
                                                                 f"ignored: OSC is taken on {where}, not here")
                elif message.type == WSMsgType.ERROR:
                    self._refuse_log(listener.peer, "websocket", f"closed: {first_line(ws.exception() or ws)}")
        finally:
            self._listeners.discard(listener)
            sender.cancel()
        return ws

    def _command(self, listener: _Listener, text: str) -> None:
        """A LISTEN or IGNORE; anything else is ignored with one (rate-limited) line."""
        try:
            command = json.loads(text)
        except ValueError:
            command = None
        if not (isinstance(command, dict) and command.get("COMMAND") in ("LISTEN", "IGNORE")
                and isinstance(command.get("DATA"), str)):
            self._refuse_log(listener.peer, "websocket", f"{text[:80]!r} ignored: the commands are "
                                                         '{"COMMAND": "LISTEN" or "IGNORE", "DATA": "/path"}')
            return
        path = command["DATA"]
        if path not in READABLE:
            self._refuse_log(listener.peer, "websocket", f"LISTEN {path[:80]!r} ignored: no value there (listen to "
                                                         "/uncanny/state/... or a control with ACCESS 3)")
            return
        if command["COMMAND"] == "IGNORE":
            listener.paths.discard(path)
            return
        listener.paths.add(path)
        listener.sent.pop(path, None)  # a fresh listener starts in sync: the value now goes out at once
        self._push(values(self._state()))

    async def _push_forever(self) -> None:
        """After each notify(), push to each websocket the listened values that differ from what it was last sent;
        after a round that sent something, the next waits PUSH_GAP, gathering the changes of several refreshes."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), PUSH_CHECK)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._listeners and self._push(values(self._state())):
                await asyncio.sleep(PUSH_GAP)

    def _push(self, current: dict[str, tuple[Any, ...]]) -> bool:
        """True if anything was sent."""
        packets: dict[str, bytes] = {}
        for listener in list(self._listeners):
            for path in listener.paths:
                value = current.get(path)
                if value is None or listener.sent.get(path) == value:
                    continue
                try:
                    packet = packets[path] = packets.get(path) or build_message(path, *value)
                except Exception as error:  # a value OSC cannot carry: skip it, keep pushing the rest
                    self._refuse_log("state", "unsendable state", f"{path}: {first_line(error)}")
                    continue
                listener.sent[path] = value
                if not listener.push(packet):
                    self._refuse_log(listener.peer, "slow websocket", f"{MAX_QUEUED} values wait unread: closed")
                    self._spawn(listener.ws.close(code=1008, message=b"too slow"))
                    break
        return bool(packets)

    def _spawn(self, work: Any) -> None:
        """Run a coroutine on the loop, holding on to it until done (the loop keeps only a weak reference)."""
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------------------------------- the page
    async def _to_page(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui/")

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name", "index.html")
        if name not in ASSETS:
            return self._refuse(request, 404, "not found", "no such page")
        return web.Response(body=self._assets[name], content_type=ASSETS[name], charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def _api_state(self, request: web.Request) -> web.Response:
        return web.json_response({"state": state_json(self._state()), "token": bool(self.config.token),
                                  "osc_port": self._osc_port})

    async def _in_worker(self, work: Callable[[], Any]) -> Any:
        return await self._loop.run_in_executor(None, work)

    async def _api_journey(self, request: web.Request) -> web.Response:
        folder = self.folder
        return web.json_response(await self._in_worker(folder.journey) if folder else {})

    async def _api_events(self, request: web.Request) -> web.Response:
        folder = self.folder
        events, lines = await self._in_worker(lambda: (folder.events(), folder.log_lines())) if folder else ([], [])
        return web.json_response({"events": events, "log": lines}, dumps=lambda d: json.dumps(d, default=str))

    async def _api_files(self, request: web.Request) -> web.Response:
        files = await self._in_worker(self.folder.files) if self.folder else []
        for entry in files:
            entry["url"] = f"/ui/files/{entry['folder']}/{quote(entry['name'])}"
        return web.json_response({"files": files})

    async def _picture(self, request: web.Request) -> web.Response:
        folder = self.folder
        jpeg = await self._in_worker(lambda: self.picture.jpeg() or (folder.newest_thumbnail() if folder else None))
        if jpeg is None:
            return web.Response(status=204)
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        folder, name = request.match_info["folder"], request.match_info["name"]
        if "/" in name or "\\" in name or name.startswith(".") or folder not in ("recordings", "run"):
            return self._refuse(request, 404, "path traversal", "only the files /ui/api/files lists can be fetched")
        path = await self._in_worker(lambda: self.folder.file(folder, name)) if self.folder else None
        if path is None:
            return self._refuse(request, 404, "not found", "no such file (the list is at /ui/api/files)")
        return web.FileResponse(path, headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"})

    async def _api_action(self, request: web.Request) -> web.Response:
        token = self.config.token
        if token:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return self._refuse(request, 403, "no token", "this action needs [http] token "
                                                              "(Authorization: Bearer TOKEN)")
        if request.content_type != "application/json":
            return self._refuse(request, 415, "not json", 'send JSON: {"action": NAME, "args": [...]}')
        try:
            async with asyncio.timeout(BODY_SECONDS):
                body = await request.read()
        except TimeoutError:
            return self._refuse(request, 408, "slow body", f"the body did not arrive within {BODY_SECONDS:g} s")
        try:
            command = json.loads(body)
        except ValueError:
            command = None
        if not (isinstance(command, dict) and isinstance(command.get("action"), str)
                and isinstance(command.get("args", []), list)):
            return self._refuse(request, 400, "malformed action", 'send {"action": NAME, "args": [...]}')
        spec = BY_NAME.get(command["action"])
        if spec is None or spec.address is None or spec.kind == "query":
            return self._refuse(request, 400, "unknown action", f"unknown action {command['action'][:40]!r}; "
                                                                 "the names are those of docs/osc.md")
        try:
            action = make_action(spec, command.get("args", []), source="web")
        except ActionError as error:
            return self._refuse(request, 400, "invalid action", str(error))
        if not self._inbox.put(action):
            return self._refuse(request, 503, "busy", f"{self._inbox.capacity} actions are waiting; try again")
        self.stats["actions"] += 1
        return web.json_response({"queued": action.name}, status=202)


class _Listener:
    """One websocket: the paths it listens to and its own queue, so a slow client never holds the others up."""

    def __init__(self, ws: web.WebSocketResponse, peer: str) -> None:
        self.ws, self.peer = ws, peer
        self.paths: set[str] = set()
        self.sent: dict[str, tuple[Any, ...]] = {}  # path -> the value it was last sent
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)

    def push(self, packet: bytes) -> bool:
        try:
            self.queue.put_nowait(packet)
            return True
        except asyncio.QueueFull:
            return False

    async def send_forever(self, refuse: Callable[[str, str, str], None]) -> None:
        try:
            while True:
                packet = await self.queue.get()
                await asyncio.wait_for(self.ws.send_bytes(packet), SEND_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # gone, or not reading: drop it
            refuse(self.peer, "websocket", f"closed: {first_line(error)}")
            await self.ws.close()


class _Busy(asyncio.Protocol):
    """A connection beyond MAX_CONNECTIONS: answered 503 at once and closed."""

    def __init__(self, refuse: Callable[[str, str, str], None]) -> None:
        self.refuse = refuse

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername") or ("?",)
        self.refuse(str(peer[0]), "busy", f"over {MAX_CONNECTIONS} connections: 503")
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        transport.close()


class _ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's own server log: a request it could not parse ("Error handling request from PEER", with the error)
    becomes one rate-limited line without a traceback; its debug lines stay debug lines."""

    def __init__(self, refusals: RateLimitedLog) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.refusals = refusals

    def log(self, level: int, msg: object, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        if level < logging.WARNING:
            self.logger.log(level, msg, *args, exc_info=exc_info, **kwargs)
            return
        error = exc_info if isinstance(exc_info, BaseException) else None
        reason = getattr(error, "message", None) or (first_line(error) if error else str(msg))
        self.refusals(str(args[0]) if args else "?", "malformed request", str(reason).strip()[:200])
