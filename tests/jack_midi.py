"""Real MIDI without hardware: a private JACK server (the dummy backend) and controllers made with python-rtmidi.

There is no sound card here, so ALSA's sequencer cannot be opened; JACK's dummy backend runs anywhere and its MIDI
ports carry real MIDI between processes and threads. Each server gets a unique name (JACK_DEFAULT_SERVER selects
it for every client in this process) and is ended by its PID.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from installation.control.midi import _quiet_stderr

WAIT = 30.0  # seconds: the bound on every wait (a loaded 2-core machine); JACK answers in milliseconds
_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_names)}"


@contextmanager
def jack_server() -> Iterator[str]:
    """A running JACK server of its own (`jackd -d dummy`); yields its name, set as JACK_DEFAULT_SERVER."""
    import rtmidi

    if shutil.which("jackd") is None:
        raise RuntimeError("jackd is not installed (apt-get install jackd2)")
    name = unique("uncanny-test-")
    # --sync: the server waits for every client each cycle (10 s at most), so a client the loaded machine
    # schedules late delays a cycle instead of losing its MIDI in an xrun
    server = subprocess.Popen(["jackd", "--no-realtime", "--sync", "--timeout", "10000", "-n", name,
                               "-d", "dummy", "-r", "48000"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"})
    before = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        until(lambda: _answers(rtmidi), f"JACK server {name} to start")
        yield name
    finally:
        if before is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = before
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def _answers(rtmidi: Any) -> bool:
    try:
        with _quiet_stderr():
            rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "probe").delete()
        return True
    except rtmidi.RtMidiError:
        return False


def until(condition: Callable[[], Any], what: str, wait: float = WAIT) -> Any:
    """Poll `condition` until it is truthy (returned) or `wait` seconds have passed (AssertionError)."""
    deadline = time.monotonic() + wait
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {wait:g} s for {what}")
        time.sleep(0.01)
    return result


class Controller:
    """A MIDI controller: a JACK client with an output port named `port`, as a USB controller shows up."""

    def __init__(self, port: str) -> None:
        import rtmidi

        self.port = port
        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "controller")
        self.out.open_virtual_port(port)

    def cc(self, number: int, value: int, channel: int = 1) -> None:
        self.out.send_message([0xB0 | (channel - 1), number, value])

    def note(self, number: int, velocity: int, channel: int = 1) -> None:
        self.out.send_message([0x90 | (channel - 1), number, velocity])

    def note_off(self, number: int, channel: int = 1) -> None:
        self.out.send_message([0x80 | (channel - 1), number, 0])

    def send(self, data: list[int]) -> None:
        self.out.send_message(data)

    def close(self) -> None:
        self.out.close_port()
        self.out.delete()


class Lights:
    """A controller's LED / motor-fader input: a JACK client with an input port named `port`, collecting."""

    def __init__(self, port: str) -> None:
        import rtmidi

        self.received: list[list[int]] = []
        self.port = port
        self.into = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "lights")
        self.into.open_virtual_port(port)
        self.into.set_callback(lambda event, _: self.received.append(event[0]))

    def close(self) -> None:
        self.into.cancel_callback()
        self.into.close_port()
        self.into.delete()
