"""Zeroconf (mDNS) adverts, `[osc] advertise`: the OSC port as `_osc._udp` and the HTTP port as `_oscjson._tcp`
(OSCQuery), so ossia score's device list, Chataigne and other OSCQuery tools show the installation without anyone
typing its address.

Registering probes the network for a second or two, so it runs on a thread of its own and the show starts at once;
a network without multicast is one warning, and the installation goes on unadvertised.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence

from ..messages import first_line
from .oscquery import NAME

log = logging.getLogger(__name__)

OSC_SERVICE = "_osc._udp.local."
OSCQUERY_SERVICE = "_oscjson._tcp.local."
MAX_LABEL = 63  # bytes of a DNS label: the service's instance name


def own_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback (127.0.0.1 when it has none): where the network reaches
    servers that listen on every interface."""
    import ifaddr

    found = [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
             if isinstance(ip.ip, str) and not ip.ip.startswith("127.")]
    return found or ["127.0.0.1"]


class Advertiser:
    """`services`: (service type, port) pairs, announced for `host` (an address the servers listen on; 0.0.0.0 =
    this machine's addresses on every interface). `start()` returns at once; `stop()` says goodbye on the network."""

    def __init__(self, host: str, services: Sequence[tuple[str, int]]) -> None:
        self.host, self.services = host, list(services)
        self.names: list[str] = []  # as registered (zeroconf appends " (2)" when another machine has the name)
        self._zeroconf = None
        self._thread = threading.Thread(target=self._register, name="zeroconf", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _register(self) -> None:
        try:
            from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, Zeroconf

            everywhere = self.host in ("0.0.0.0", "::")
            addresses = own_addresses() if everywhere else [self.host]
            self._zeroconf = zeroconf = Zeroconf(interfaces=InterfaceChoice.All if everywhere else [self.host],
                                                 ip_version=IPVersion.V4Only if ":" not in self.host else None)
            machine = socket.gethostname().split(".")[0] or "localhost"
            instance = f"{NAME} on {machine}".encode()[:MAX_LABEL].decode("utf-8", "ignore")
            for kind, port in self.services:
                info = ServiceInfo(kind, f"{instance}.{kind}", port=port, parsed_addresses=addresses,
                                   server=f"{machine}.local.", properties={"txtvers": "1"})
                zeroconf.register_service(info, allow_name_change=True)
                self.names.append(info.name)
            log.info("zeroconf: advertising %s", ", ".join(self.names))
        except Exception as error:  # no multicast, no network: the show goes on, unadvertised
            log.warning("zeroconf: cannot advertise the installation (%s); give controllers its address by hand, "
                        "or set [osc] advertise = false", first_line(error))

    def stop(self) -> None:
        if self._thread.is_alive():
            self._thread.join(10)
        zeroconf, self._zeroconf = self._zeroconf, None
        if zeroconf is not None:
            try:
                zeroconf.unregister_all_services()
                zeroconf.close()
            except Exception as error:
                log.warning("zeroconf: %s", first_line(error))
