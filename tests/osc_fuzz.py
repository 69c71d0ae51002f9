"""Malformed OSC datagrams of every kind the server must refuse (tests and benchmarks/bench_osc.py).

Every datagram made here must be refused, or ignored as a button's release: none is a well-formed message with
valid arguments for an address of the namespace, so after any number of them the inbox must still be empty.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable, Iterator

from installation.control.packets import NTP_EPOCH, build_message

TRIGGERS = ("/uncanny/pause", "/uncanny/resume", "/uncanny/toggle_pause", "/uncanny/reset", "/uncanny/back",
            "/uncanny/snapshot", "/uncanny/record/stop", "/uncanny/state", "/uncanny/snapshots")
NEEDS_ARGUMENTS = ("/uncanny/lr", "/uncanny/batch", "/uncanny/loss", "/uncanny/walk/period",
                   "/uncanny/view/blackout", "/uncanny/speed", "/uncanny/walk/seed")


def osc_string(text: bytes) -> bytes:
    return text + b"\0" * (4 - len(text) % 4)


def raw_message(address: bytes, tags: bytes, payload: bytes = b"") -> bytes:
    return osc_string(address) + osc_string(tags) + payload


def timetag(unix: float) -> bytes:
    seconds = unix + NTP_EPOCH
    return struct.pack(">II", int(seconds), int((seconds % 1) * 2**32))


def bundle(tag: bytes, *elements: bytes) -> bytes:
    return b"#bundle\0" + tag + b"".join(struct.pack(">i", len(e)) + e for e in elements)


def invalid_values(rng: random.Random) -> bytes:
    """Well-formed OSC, refused by the action table: wrong values, types, counts."""
    return rng.choice([
        lambda: build_message("/uncanny/lr", rng.choice([float("nan"), float("inf"), -1.0, 2.0, 1e30])),
        lambda: build_message("/uncanny/lr", "fast"),
        lambda: build_message("/uncanny/lr", 0.001, 0.002),
        lambda: build_message("/uncanny/batch", rng.choice([0, 65, -3, 2**31 - 1])),
        lambda: build_message("/uncanny/batch", 2.5),
        lambda: build_message("/uncanny/loss", rng.choice(["hinge", "", "x" * 65, "log" * 30])),
        lambda: build_message("/uncanny/loss", 3),
        lambda: build_message("/uncanny/walk/period", rng.choice([0.0, -5.0, 1e9])),
        lambda: build_message("/uncanny/walk/seed", -1),
        lambda: build_message("/uncanny/view/grid", rng.choice([2, -1, 0.5])),
        lambda: build_message("/uncanny/view/blackout", rng.choice([1.5, -0.1])),
        lambda: build_message("/uncanny/view/blackout"),
        lambda: build_message("/uncanny/rewind", -1),
        lambda: build_message("/uncanny/reset", 1, 0),
        lambda: build_message("/uncanny/ping", "hello"),
        lambda: build_message("/uncanny/speed", float("-inf")),
        lambda: raw_message(b"/uncanny/loss", b",b", struct.pack(">i", 8) + b"\x01" * 8),  # a blob
        lambda: build_message(rng.choice(["/uncanny/nope", "/x", "/uncanny", "/uncanny/state/iteration"])),
    ])()


def button_like(rng: random.Random) -> bytes:
    """What a controller's buttons send, made wrong (two values, a string, NaN, a blob, a fraction on rewind), or a
    release (0, 0.0, F, a 64-bit 0), which a trigger address ignores."""
    address = rng.choice(TRIGGERS).encode()
    return rng.choice([
        lambda: raw_message(address, b"," + bytes(rng.choices(b"TF", k=2))),
        lambda: build_message(address.decode(), rng.choice([1.0, 1, 0.0]), rng.choice([0.0, 1.0, 1])),
        lambda: build_message(address.decode(), rng.choice(["1", "press", "", "T"])),
        lambda: build_message(address.decode(), rng.choice([float("nan"), float("inf"), float("-inf")])),
        lambda: raw_message(address, b",d", struct.pack(">d", float("nan"))),
        lambda: raw_message(address, b",b", struct.pack(">i", 4) + b"\1\0\0\0"),
        lambda: raw_message(address, b",F"),  # releases from here on: ignored, never queued
        lambda: build_message(address.decode(), rng.choice([0.0, 0])),
        lambda: raw_message(address, b",h", struct.pack(">q", 0)),
        lambda: raw_message(address, b",d", struct.pack(">d", -0.0)),
        lambda: build_message("/uncanny/rewind", rng.choice([0.5, 1.5, -1.0, float("nan"), "1"])),
        lambda: build_message("/uncanny/rewind", 1.0, 0.0),
        lambda: raw_message(b"/uncanny/rewind", b",TF"),
        lambda: rng.choice([raw_message(b"/uncanny/rewind", b",F"), build_message("/uncanny/rewind", 0.0)]),
        lambda: build_message("/uncanny/record/start", rng.choice([float("nan"), "vp9", ""])),
        lambda: build_message("/uncanny/record/start", rng.choice([0.0, 0])),
    ])()


def malformed(rng: random.Random) -> bytes:
    """Broken packets: python-osc's traps and plain garbage."""
    valid = build_message(rng.choice(NEEDS_ARGUMENTS), 0.5)
    return rng.choice([
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64))),
        lambda: b"",
        lambda: valid[:rng.randrange(1, len(valid))],  # any prefix: at best a message short of its argument
        lambda: (b"#bundle\0" + b"\0" * 7 + b"\1")[:rng.randrange(8, 16)],
        lambda: b"#bundle\0\0\0\0\0\0\0\0\1" + struct.pack(">i", rng.choice([-4, -1, -2**31, 0, 3, 4096])),
        lambda: b"#bundle\0\0\0\0\0\0\0\0\1" + struct.pack(">i", -4) + b"\0" * rng.choice([0, 4, 8]),
        lambda: bundle(timetag(time.time() + rng.choice([3600, 86400, 10**7])), build_message("/uncanny/reset")),
        lambda: bundle(b"\xff\xff\xff\xff\0\0\0\0", build_message("/uncanny/snapshot")),
        lambda: raw_message(b"/uncanny/\xff\xfe", b","),
        lambda: raw_message(b"/uncanny/loss", b",s", osc_string(b"\xc3\x28")),
        lambda: raw_message(b"/uncanny/lr", b"f", struct.pack(">f", 0.1)),  # no comma
        lambda: raw_message(b"/uncanny/lr", b",[f]", struct.pack(">f", 0.1)),
        lambda: raw_message(b"/uncanny/lr", b",I"),
        lambda: raw_message(b"/uncanny/lr", b",c", b"\0\0\0a"),
        lambda: raw_message(b"/uncanny/lr", b",b", struct.pack(">i", -8)),
        lambda: raw_message(b"/uncanny/lr", b",b", struct.pack(">i", 2**31 - 1)),
        lambda: raw_message(b"/uncanny/lr", b",f", struct.pack(">f", 0.1) + b"\0\0\0\0"),  # trailing bytes
        lambda: raw_message(b"/uncanny/lr", b",s", b"abcd"),  # string without its zero
        lambda: raw_message(b"/uncanny/" + b"a" * rng.randrange(300, 1000), b","),
        lambda: build_message("/uncanny/loss", "x" * rng.randrange(9000, 20000)),  # over MAX_DATAGRAM
        lambda: build_message(rng.choice(["/uncanny/*", "/uncanny/{reset,pause}", "/uncanny/re?et", "/*/*"])),
        lambda: b"/uncanny/reset",  # no terminating zero
        lambda: b"/uncanny/reset\0",  # badly padded
        lambda: b"/uncanny reset\0\0",  # a space in the address
        lambda: _nested(rng.randrange(5, 12)),
        lambda: bundle(b"\0\0\0\0\0\0\0\1", *[build_message("/uncanny/nope")] * 70),
    ])()


def _nested(depth: int) -> bytes:
    packet = build_message("/uncanny/reset")
    for _ in range(depth):
        packet = bundle(b"\0\0\0\0\0\0\0\1", packet)
    return packet


GENERATORS: tuple[Callable[[random.Random], bytes], ...] = (invalid_values, button_like, malformed)


def datagrams(count: int, seed: int = 0) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(count):
        yield rng.choice(GENERATORS)(rng)
