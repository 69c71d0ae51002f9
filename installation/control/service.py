"""What the live loop holds: the inbox, and the servers the `[osc]` and `[http]` tables ask for.

    control = ControlService(preset.osc, http=preset.http, folder=RunFolderView(run_dir, recordings, log, thumbs))
    # binds the ports (OscError / HttpError: one line) but starts nothing
    window.handlers.update(key_handlers(control.inbox.put))
    control.start(); for line in control.describe(): print(line)
    ... each refresh: for action in control.inbox.drain(): apply it; control.publish(state)
                      if control.picture.wanted(now): control.picture.offer(read_framebuffer(...), now)
    control.stop()

With `enabled = false` (`--no-osc`) there is no OSC socket; with `[http] port = 0` (`--http-port 0`) no HTTP server;
the inbox still takes the keys' (and the director's) actions, so the live loop has one path either way. With
`[osc] advertise`, the servers that run are announced by zeroconf.
"""

from __future__ import annotations

from typing import Any

from .actions import Action
from .advertise import OSC_SERVICE, OSCQUERY_SERVICE, Advertiser
from .config import HttpConfig, OscConfig
from .http import HttpServer
from .inbox import Inbox
from .osc import OscServer
from .state import ControlState
from .web import PictureFeed, RunFolderView


class ControlService:
    def __init__(self, config: OscConfig, inbox: Inbox | None = None, http: HttpConfig | None = None,
                 folder: RunFolderView | None = None) -> None:
        self.config = config
        self.inbox = inbox or Inbox()
        self.picture = PictureFeed()  # the newest picture for the status page, offered by the live loop
        self._state: Any = ControlState()
        self.osc = OscServer(config, self.inbox) if config.enabled else None
        self.http_config = http
        self.http: HttpServer | None = None
        if http is not None and http.port:
            try:
                self.http = HttpServer(http, lambda: self._state, self.inbox,
                                       self.osc.address[1] if self.osc else None, folder, self.picture)
            except BaseException:
                if self.osc is not None:
                    self.osc.stop()  # never started: this only closes its socket
                raise
        services: dict[str, list[tuple[str, int]]] = {}
        if config.advertise and self.osc is not None:
            services.setdefault(self.osc.address[0], []).append((OSC_SERVICE, self.osc.address[1]))
        if config.advertise and self.http is not None:
            services.setdefault(self.http.address[0], []).append((OSCQUERY_SERVICE, self.http.address[1]))
        self.advertisers = [Advertiser(host, found) for host, found in services.items()]

    def start(self) -> None:
        if self.osc is not None:
            self.osc.start()
        if self.http is not None:
            self.http.start()
        for advertiser in self.advertisers:
            advertiser.start()

    def stop(self) -> None:
        for advertiser in self.advertisers:
            advertiser.stop()
        if self.http is not None:
            self.http.stop()
        if self.osc is not None:
            self.osc.stop()

    def __enter__(self) -> ControlService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def state(self) -> Any:
        return self._state

    def publish(self, state: Any) -> None:
        """The newest state, for queries, OSCQuery VALUEs and LISTEN, the status page and the feedback thread (a
        reference swap, and a wake-up of the HTTP thread while a websocket listens: cheap)."""
        self._state = state
        if self.osc is not None:
            self.osc.publish(state)
        if self.http is not None:
            self.http.notify()

    def failed(self, action: Action, text: str) -> None:
        """An action from OSC could not be applied (e.g. the engine is down): tell its sender."""
        if self.osc is not None:
            self.osc.error(action.reply_to, text)

    def alert(self, text: str) -> None:
        """A fault of the show itself (an output that failed) for every controller listening."""
        if self.osc is not None:
            self.osc.alert(text)

    def describe(self) -> list[str]:
        """Lines for the start-up log: where OSC, OSCQuery and the status page listen, or that they are off."""
        lines = [self.osc.describe() if self.osc is not None else
                 "OSC off ([osc] enabled = false or --no-osc); keys only"]
        if self.http is not None:
            lines.append(self.http.describe())
        elif self.http_config is not None:
            lines.append("no HTTP server ([http] port = 0 or --http-port 0): no status page, no OSCQuery")
        for advertiser in self.advertisers:
            services = ", ".join(f"{kind.removesuffix('.local.')} port {port}" for kind, port in advertiser.services)
            lines.append(f"zeroconf: announcing {services} ([osc] advertise)")
        return lines
