"""The control servers' settings: [osc] (the OSC server) and [http] (OSCQuery and the status page): where they
listen, whom they answer and whom they accept."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..validation import ConfigError, check_float, check_int

DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
# Chataigne's OSCQuery module asks this port by default; it is neither Open Stage Control's 8080 (often on the same
# laptop) nor the OSC port 8000
DEFAULT_HTTP_PORT = 5678
MAX_TOKEN = 256


def check_host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"host must be an IP address to listen on (0.0.0.0 = all, 127.0.0.1 = this machine "
                          f"only), got {host!r}") from None
    return host


def check_networks(entries: tuple[str, ...]) -> tuple[str, ...]:
    """An allowlist: CIDR networks or single addresses."""
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except (TypeError, ValueError):
            raise ConfigError(f"allow entries must be networks like \"192.168.1.0/24\" or addresses, "
                              f"got {entry!r}") from None
    return entries


def parse_target(text: str) -> tuple[str, int]:
    """'host:port' (or '[v6 address]:port') -> (host, port); ConfigError names the entry."""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"feedback entries must be \"host:port\" with a port 1..65535, got {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class OscConfig:
    """The OSC server ([osc] table): where it listens, whom it answers and whom it accepts."""

    enabled: bool = True
    host: str = "0.0.0.0"  # bind address; 0.0.0.0 = every interface (a tablet on the LAN can reach it)
    port: int = 8000  # TouchOSC's default outgoing port; 0 = any free port (printed at start)
    reply_port: int = 0  # 0 = reply to the sender's source address and port; N = the sender's IP at port N
    feedback: tuple[str, ...] = ()  # "host:port" targets that always receive state
    allow: tuple[str, ...] = DEFAULT_ALLOW  # CIDR networks whose datagrams are accepted
    state_every: float = 1.0  # seconds between state broadcasts; 0 = only on change and on request
    advertise: bool = True  # zeroconf: _osc._udp (this port) and _oscjson._tcp (the [http] port) on the network

    def __post_init__(self) -> None:
        check_host(self.host)
        check_int("port", self.port, 0, 65535)
        check_int("reply_port", self.reply_port, 0, 65535)
        for entry in self.feedback:
            if not isinstance(entry, str):
                raise ConfigError(f"feedback entries must be \"host:port\" strings, got {entry!r}")
            parse_target(entry)
        check_networks(self.allow)
        check_float("state_every", self.state_every, 0.0, 3600.0)


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP server ([http] table): OSCQuery (tree, LISTEN) for controllers and the technician's status page at
    /ui/, on one port."""

    port: int = DEFAULT_HTTP_PORT  # 0 = no HTTP server
    host: str = "0.0.0.0"  # bind address, as [osc] host
    allow: tuple[str, ...] = DEFAULT_ALLOW  # networks whose requests are answered; everybody else gets 403
    token: str = ""  # when set, the page's action buttons must send it (403 without); "" = the allowlist suffices

    def __post_init__(self) -> None:
        check_int("port", self.port, 0, 65535)
        check_host(self.host)
        check_networks(self.allow)
        if not isinstance(self.token, str) or len(self.token) > MAX_TOKEN or \
                any(not ("!" <= c <= "~") for c in self.token):
            raise ConfigError(f"token must be at most {MAX_TOKEN} printable ASCII characters without spaces "
                              "(the value is not repeated here: it is a secret)")
