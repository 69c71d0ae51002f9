"""A strict, bounded check of OSC datagrams, run before python-osc ever parses them.

python-osc 1.10.2 is lenient and has traps: a bundle element of size -4 makes its parser loop forever, invalid UTF-8
escapes as UnicodeDecodeError, missing argument bytes are zero-padded, and a future time tag sleeps the handler
thread. `check_datagram` walks the packet once with every size checked against the bytes actually there, so only
well-formed OSC 1.0 reaches python-osc.
"""

from __future__ import annotations

import re
import struct
import time

from pythonosc.osc_message_builder import OscMessageBuilder

MAX_DATAGRAM = 8192  # bytes; every message of our namespace fits in a few hundred
MAX_ADDRESS = 256
MAX_DEPTH = 4  # nested bundles
MAX_MESSAGES = 64  # messages in one packet
FUTURE_TOLERANCE = 2.0  # seconds of clock skew forgiven; bundles are run at once, never scheduled
NTP_EPOCH = 2208988800  # seconds from 1900 (OSC time tags) to 1970
TAGS = {"i": 4, "f": 4, "h": 8, "d": 8, "t": 8, "T": 0, "F": 0, "N": 0, "s": -1, "b": -2}  # -1 string, -2 blob
_ADDRESS = re.compile(r"/[!-~]*")
_PATTERN = re.compile(r"[*?\[\]{}]")


class PacketError(ValueError):
    """A datagram is not acceptable; `kind` names the class of problem (for rate-limited logs)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def check_datagram(data: bytes, now: float | None = None) -> None:
    """Raise PacketError unless `data` is one well-formed OSC message or bundle we are willing to dispatch."""
    if len(data) > MAX_DATAGRAM:
        raise PacketError("too large", f"datagram of {len(data)} bytes; at most {MAX_DATAGRAM}")
    if not data:
        raise PacketError("malformed", "empty datagram")
    count = _check_packet(data, 0, time.time() if now is None else now)
    if count > MAX_MESSAGES:
        raise PacketError("malformed", f"{count} messages in one packet; at most {MAX_MESSAGES}")


def _check_packet(data: bytes, depth: int, now: float) -> int:
    """Check one message or bundle spanning all of `data`; the number of messages in it."""
    if data.startswith(b"#bundle\0"):
        return _check_bundle(data, depth, now)
    if data[:1] == b"/":
        _check_message(data)
        return 1
    raise PacketError("malformed", "not OSC: a packet starts with '/' (a message) or '#bundle'")


def _check_bundle(data: bytes, depth: int, now: float) -> int:
    if depth >= MAX_DEPTH:
        raise PacketError("malformed", f"bundles nested deeper than {MAX_DEPTH}")
    if len(data) < 16:
        raise PacketError("malformed", "truncated bundle: no time tag")
    seconds, fraction = struct.unpack(">II", data[8:16])
    if (seconds, fraction) != (0, 1):  # (0, 1) means "immediately"
        ahead = seconds - NTP_EPOCH + fraction / 2**32 - now
        if ahead > FUTURE_TOLERANCE:
            raise PacketError("future", f"bundle time tag {ahead:.3g} s in the future; this installation runs "
                                        f"messages at once and refuses time tags more than "
                                        f"{FUTURE_TOLERANCE:g} s ahead")
    index, count = 16, 0
    while index < len(data):
        if index + 4 > len(data):
            raise PacketError("malformed", "truncated bundle: element size cut off")
        (size,) = struct.unpack(">i", data[index:index + 4])
        if size <= 0 or size % 4 or index + 4 + size > len(data):
            raise PacketError("malformed", f"bundle element size {size} at byte {index} does not fit the "
                                           f"{len(data)}-byte datagram")
        count += _check_packet(data[index + 4:index + 4 + size], depth + 1, now)
        if count > MAX_MESSAGES:
            break  # check_datagram reports it; stop walking a packet that is refused anyway
        index += 4 + size
    return count


def _string(data: bytes, index: int, what: str) -> tuple[str, int]:
    end = data.find(b"\0", index)
    if end < 0:
        raise PacketError("malformed", f"truncated: {what} has no terminating zero byte")
    after = (end + 4) & ~3  # the zero and padding up to a multiple of four
    if after > len(data) or data[end:after].strip(b"\0"):
        raise PacketError("malformed", f"truncated or badly padded {what}")
    try:
        return data[index:end].decode("utf-8"), after
    except UnicodeDecodeError:
        raise PacketError("malformed", f"{what} is not valid UTF-8") from None


def _check_message(data: bytes) -> None:
    address, index = _string(data, 0, "address")
    if len(address) > MAX_ADDRESS or not _ADDRESS.fullmatch(address):
        raise PacketError("malformed", f"bad address {address[:60]!r}: printable ASCII after '/', at most "
                                       f"{MAX_ADDRESS} characters")
    if _PATTERN.search(address):
        raise PacketError("pattern", f"address patterns (* ? [] {{}}) are not accepted, got {address[:60]!r}; "
                                     "send the full address")
    if index == len(data):
        return  # no type tag string: a message without arguments (old senders)
    tags, index = _string(data, index, "type tag string")
    if not tags.startswith(","):
        raise PacketError("malformed", "type tag string does not start with ','")
    for tag in tags[1:]:
        size = TAGS.get(tag)
        if size is None:
            raise PacketError("malformed", f"type tag {tag!r} is not accepted; use i f s b h d t T F N")
        if size == -1:
            _, index = _string(data, index, "string argument")
            continue
        if size == -2:
            if index + 4 > len(data):
                raise PacketError("malformed", "truncated: blob size cut off")
            (length,) = struct.unpack(">i", data[index:index + 4])
            size = 4 + ((length + 3) & ~3) if length >= 0 else -1
            if size < 0:
                raise PacketError("malformed", f"blob size {length} is negative")
        if index + size > len(data):
            raise PacketError("malformed", f"truncated: argument {tag!r} needs {size} bytes, "
                                           f"{len(data) - index} left")
        index += size
    if index != len(data):
        raise PacketError("malformed", f"{len(data) - index} bytes after the last argument")


def build_message(address: str, *values: object) -> bytes:
    """One OSC message: bools as 0/1 ints, ints (64-bit `h` beyond 32 bits), floats (32-bit, as controllers
    expect) and strings."""
    builder = OscMessageBuilder(address)
    for value in values:
        if isinstance(value, bool):
            builder.add_arg(int(value), "i")
        elif isinstance(value, int):
            builder.add_arg(value, "i" if -2**31 <= value < 2**31 else "h")
        elif isinstance(value, float):
            builder.add_arg(value, "f")
        else:
            builder.add_arg(str(value), "s")
    return builder.build().dgram
