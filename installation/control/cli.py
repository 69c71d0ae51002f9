"""`run_installation.py osc ADDRESS [ARGS...]`: send one OSC message and print every reply, for technicians,
scripts (cron, show control) and tests.

Arguments are typed as written: an integer if it reads as one, a finite number if it reads as one, else a string;
or explicitly `i:3`, `f:0.5`, `s:text` (`f:nan` sends NaN, `s:12` the string "12").
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import time

from pythonosc.osc_message import OscMessage

from .packets import PacketError, build_message, check_datagram

DEFAULT_PORT = 8000  # [osc] port's default


class OscCliError(ValueError):
    """Bad input to the `osc` command; one line, exit 2."""


def parse_argument(text: str) -> int | float | str:
    kind, colon, rest = text.partition(":")
    if colon and kind in ("i", "f", "s"):
        try:
            return int(rest) if kind == "i" else float(rest) if kind == "f" else rest
        except ValueError:
            raise OscCliError(f"{text!r}: {rest!r} is not {'an integer' if kind == 'i' else 'a number'}") from None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text  # "nan", "inf": words unless written f:nan


def format_reply(data: bytes) -> str:
    """One line per received datagram: the address and its arguments (strings quoted)."""
    try:
        check_datagram(data)
        if not data.startswith(b"/"):
            raise PacketError("bundle", "a bundle")
        message = OscMessage(data)
    except PacketError as error:
        return f"(not a plain OSC message of {len(data)} bytes: {error})"
    return " ".join([message.address] + [json.dumps(a) if isinstance(a, str) else repr(a) for a in message.params])


def cmd_osc(args: argparse.Namespace) -> None:
    if not args.address.startswith("/"):
        raise OscCliError(f"the address must start with '/', e.g. /uncanny/ping; got {args.address!r}")
    values = [parse_argument(a) for a in args.args]
    try:
        packet = build_message(args.address, *values)
    except Exception as error:  # python-osc's BuildError: an int beyond 32 bits, a string it cannot encode
        raise OscCliError(f"cannot build the message: {error}") from None
    try:
        target = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror as error:
        raise OscCliError(f"cannot resolve {args.host!r}: {error.strerror}") from None
    with socket.socket(target[0], socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("", args.listen))
            sock.sendto(packet, target[4])
        except OSError as error:
            raise OscCliError(f"cannot send to {args.host}:{args.port}: {error.strerror or error}") from None
        deadline = time.monotonic() + args.wait
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:  # ICMP port unreachable: nobody listens there; keep waiting out --wait
                continue
            print(format_reply(data), flush=True)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0..65535, got {text!r}")
    return int(text)


def _wait(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 3600, got {text!r}")
    return value


def add_osc_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `osc` to the CLI's subcommands."""
    osc = commands.add_parser(
        "osc", help="send one OSC message to the installation and print the replies",
        usage="%(prog)s ADDRESS [ARGS...] [--host H] [--port P] [--wait S]",
        description=__doc__,
        epilog="examples: osc /uncanny/ping; osc /uncanny/lr 0.0005; osc /uncanny/view/blackout 1 3; "
               "osc /uncanny/loss s:softplus --host 192.168.1.10")
    osc.add_argument("address", help="e.g. /uncanny/ping (docs/osc.md lists the namespace)")
    osc.add_argument("args", nargs="*", help="arguments: 3, 0.5, text, or typed i:3 f:0.5 s:text")
    osc.add_argument("--host", default="127.0.0.1", help="the installation's address (default 127.0.0.1)")
    osc.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"its OSC port (default {DEFAULT_PORT})")
    osc.add_argument("--wait", type=_wait, default=1.0, help="seconds to print replies for (default 1)")
    osc.add_argument("--listen", type=_port, default=0,
                     help="send from (and listen on) this port, for an installation with [osc] reply_port set "
                          "(default: any free port)")
    osc.set_defaults(handler=cmd_osc)
    return osc
