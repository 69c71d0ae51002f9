"""`run_installation.py osc ADDRESS [ARGS...]`: send one OSC message and print its answer, for technicians,
scripts (cron, show control, a monitoring check) and tests.

The answer is what the message asks for: /uncanny/ping's /uncanny/pong, /uncanny/snapshots' list, /uncanny/state's
values (until --wait ends), or with --expect ADDRESS the first message at that address. An action has no answer of
its own: the command sends a ping after it and waits for that pong, which says the action was taken in. The answer
is printed (with any /uncanny/error) and the command ends as soon as it is complete; --all prints everything that
arrives within --wait instead (the state the installation sends to recent senders too). Exit 0: the answer came;
1: nothing answered within --wait, or an /uncanny/error came (a health check: `osc /uncanny/ping`); 2: bad input.

Arguments are typed as written: an integer if it reads as one, a finite number if it reads as one, else a string;
or explicitly `i:3`, `f:0.5`, `s:text` (`f:nan` sends NaN, `s:12` the string "12").
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import socket
import sys
import time

from pythonosc.osc_message import OscMessage

from ..exits import BadInput
from .actions import BY_NAME, ROOT
from .packets import PacketError, build_message, check_datagram

DEFAULT_PORT = 8000  # [osc] port's default
ERROR = f"{ROOT}/error"
# A query's answer; one ending in / is a prefix, the answer a set of messages (the state: every /uncanny/state/*
# value and every control's value)
ANSWERS = {BY_NAME["ping"].address: f"{ROOT}/pong", BY_NAME["snapshots"].address: f"{ROOT}/snapshots",
           BY_NAME["state"].address: f"{ROOT}/"}
NO_REPLY = 1  # the exit code when the answer did not come (or an error did)


class OscCliError(BadInput, ValueError):
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


def read_reply(data: bytes) -> tuple[str, str]:
    """A received datagram's address ("" for what is not a plain message) and one line showing it: the address and
    its arguments (strings quoted)."""
    try:
        check_datagram(data)
        if not data.startswith(b"/"):
            raise PacketError("bundle", "a bundle")
        message = OscMessage(data)
    except PacketError as error:
        return "", f"(not a plain OSC message of {len(data)} bytes: {error})"
    return message.address, " ".join([message.address] + [json.dumps(a) if isinstance(a, str) else repr(a)
                                                          for a in message.params])


def _matches(address: str, wanted: str) -> bool:
    return address.startswith(wanted) if wanted.endswith("/") else address == wanted


def cmd_osc(args: argparse.Namespace) -> None:
    for given in filter(None, (args.address, args.expect)):
        if not given.startswith("/"):
            raise OscCliError(f"an address must start with '/', e.g. /uncanny/ping; got {given!r}")
    values = [parse_argument(a) for a in args.args]
    try:
        packet = build_message(args.address, *values)
    except Exception as error:  # python-osc's BuildError: an int beyond 32 bits, a string it cannot encode
        raise OscCliError(f"cannot build the message: {error}") from None
    try:
        target = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror as error:
        raise OscCliError(f"cannot resolve {args.host!r}: {error.strerror}") from None
    # The answer: what --expect names, a query's own answer, or for an action (which has none) the pong of a ping
    # sent right after it: the server handles datagrams in order, so that pong says the action was taken in.
    answer = args.expect or ANSWERS.get(args.address)
    confirm = None if answer is not None else build_message(f"{ROOT}/ping", token := secrets.randbelow(2**31))
    with socket.socket(target[0], socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("", args.listen))
            for datagram in filter(None, (packet, confirm)):
                sock.sendto(datagram, target[4])
        except OSError as error:
            raise OscCliError(f"cannot send to {args.host}:{args.port}: {error.strerror or error}") from None
        answered = failed = complete = False
        deadline = time.monotonic() + args.wait
        while (left := deadline - time.monotonic()) > 0 and not (answered and complete):
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:  # ICMP port unreachable, where the system reports it: keep waiting out --wait
                continue
            address, line = read_reply(data)
            if confirm is not None:
                wanted = line == f"{ROOT}/pong {token}"
            else:
                wanted = _matches(address, answer)
            answered, failed = answered or wanted, failed or address == ERROR
            if args.all or address == ERROR or (wanted and confirm is None):
                print(line, flush=True)
            complete = not args.all and (confirm is not None or not answer.endswith("/"))  # one message: done
    if args.wait and (failed or not answered):
        waited_for = answer or "answer (the pong of a ping sent after the message)"
        print("uncanny: " + ("an error came back" if failed else f"no {waited_for} from {args.host}:{args.port} "
                             f"within {args.wait:g} s; is the installation running, with OSC on that port?"),
              file=sys.stderr)
        raise SystemExit(NO_REPLY)


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
        "osc", help="send one OSC message to the installation and print its answer; exit 1 when none comes "
                    "(a health check: osc /uncanny/ping)",
        usage="%(prog)s ADDRESS [ARGS...] [--host H] [--port P] [--wait S] [--expect ADDRESS] [--all] "
              "[--listen PORT]",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples: osc /uncanny/ping; osc /uncanny/lr 0.0005; osc /uncanny/view/blackout 1 3 --expect "
               "/uncanny/state/blackout; osc /uncanny/loss s:softplus --host 192.168.1.10")
    osc.add_argument("address", help="e.g. /uncanny/ping (docs/osc.md lists the namespace)")
    osc.add_argument("args", nargs="*", help="arguments: 3, 0.5, text, or typed i:3 f:0.5 s:text")
    osc.add_argument("--host", default="127.0.0.1", help="the installation's address (default 127.0.0.1)")
    osc.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"its OSC port (default {DEFAULT_PORT})")
    osc.add_argument("--wait", type=_wait, default=1.0,
                     help="seconds to wait for the answer (default 1; 0 = only send, exit 0)")
    osc.add_argument("--expect", metavar="ADDRESS", default=None,
                     help="the answer is the first message at ADDRESS (e.g. /uncanny/state/blackout); exit 1 when "
                          "none comes within --wait")
    osc.add_argument("--all", action="store_true",
                     help="print every message that arrives within --wait (the state broadcast too)")
    osc.add_argument("--listen", type=_port, default=0,
                     help="send from (and listen on) this port, for an installation with [osc] reply_port set "
                          "(default: any free port)")
    osc.set_defaults(handler=cmd_osc)
    return osc
