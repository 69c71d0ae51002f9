"""What the live loop holds: the inbox, and the OSC and OSCQuery servers the `[osc]` table asks for.

    control = ControlService(preset.osc)          # binds the ports (OscError: one line) but starts nothing
    window.handlers.update(key_handlers(control.inbox.put))
    control.start(); for line in control.describe(): print(line)
    ... each refresh: for action in control.inbox.drain(): apply it; control.publish(ControlState(...))
    control.stop()

With `enabled = false` (`--no-osc`) there are no sockets and no threads; the inbox still takes the keys'
(and later the director's) actions, so the live loop has one path either way.
"""

from __future__ import annotations

from .actions import Action
from .config import OscConfig
from .inbox import Inbox
from .osc import OscServer
from .oscquery import OscQueryServer
from .state import ControlState


class ControlService:
    def __init__(self, config: OscConfig, inbox: Inbox | None = None) -> None:
        self.config = config
        self.inbox = inbox or Inbox()
        self.osc = OscServer(config, self.inbox) if config.enabled else None
        self.query: OscQueryServer | None = None
        if self.osc is not None and config.oscquery_port:
            try:
                self.query = OscQueryServer(config.host, config.oscquery_port, self.osc.address[1],
                                            lambda: self.state, config.allow)
            except BaseException:
                self.osc.stop()  # never started: this only closes its socket
                raise
        self._state = ControlState()

    def start(self) -> None:
        if self.osc is not None:
            self.osc.start()
        if self.query is not None:
            self.query.start()

    def stop(self) -> None:
        if self.query is not None:
            self.query.stop()
        if self.osc is not None:
            self.osc.stop()

    def __enter__(self) -> ControlService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def state(self) -> ControlState:
        return self._state

    def publish(self, state: ControlState) -> None:
        """The newest state, for queries, OSCQuery VALUEs and the feedback thread (a reference swap: cheap)."""
        self._state = state
        if self.osc is not None:
            self.osc.publish(state)

    def failed(self, action: Action, text: str) -> None:
        """An action from OSC could not be applied (e.g. the engine is down): tell its sender."""
        if self.osc is not None:
            self.osc.error(action.reply_to, text)

    def alert(self, text: str) -> None:
        """A fault of the show itself (an output that failed) for every controller listening."""
        if self.osc is not None:
            self.osc.alert(text)

    def describe(self) -> list[str]:
        """Lines for the start-up log: where OSC and OSCQuery listen, or that they are off."""
        if self.osc is None:
            return ["OSC off ([osc] enabled = false or --no-osc); keys only"]
        lines = [self.osc.describe()]
        if self.query is not None:
            lines.append(f"OSCQuery on http://{self.query.address[0]}:{self.query.address[1]}/")
        return lines
