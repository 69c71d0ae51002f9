"""The systemd unit that keeps the installation running in a gallery (docs/operations.md, "The service").

- `Type=notify`: the unit counts as started when the display process sends `READY=1` (its first frame presented);
  `WatchdogSec`: it sends `WATCHDOG=1` with every presented frame, so a frozen GL driver or a hung display loop
  gets the service restarted, not only a crash (`NotifyAccess=main`: only the display process may speak).
- `KillMode=mixed`: a stop sends SIGTERM to the display process alone, which finalises the video, lets the engine
  take its final snapshot and exits last (with the default `control-group`, ffmpeg and the engine would get SIGTERM
  at once and the video be cut short); `TimeoutStopSec` leaves time for that snapshot.
- `Restart=always` with `RestartPreventExitStatus=2`: every death relaunches, except exit code 2, the installation's
  "this can never run as configured" (a bad preset or checkpoint, a run folder of another model), which no relaunch
  fixes. A start that cannot run *now* (the OSC port held, no display or GPU yet at boot, the run folder held by
  another installation) exits 75 and is relaunched like a crash (installation/exits.py). `systemctl stop` is the
  technician's clean exit: an explicit stop never relaunches.
- Relaunches never give up (`StartLimitIntervalSec=0`: by default systemd stops after 5 starts in 10 s and leaves the
  unit failed until `reset-failed`); they come `RestartSec` apart, and on systemd 254 and later, which has
  `RestartSteps`/`RestartMaxDelaySec`, further apart the longer the outage lasts, up to two minutes.
- A user unit (`--user`, the recommended one) is part of the graphical session: it starts after it and stops with
  it; the session's `DISPLAY` and `XAUTHORITY` are written into the unit as they were when it was installed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..exits import EXIT_BAD_INPUT

UNIT_NAME = "uncanny.service"


class UnitError(ValueError):
    """A unit cannot be written as asked; one line."""


@dataclass(frozen=True)
class UnitSettings:
    command: tuple[str, ...]  # the interpreter, the script and the installation's own arguments
    working_dir: Path
    run_dir: Path
    user_unit: bool = True
    user: str = ""  # the account a system unit runs as
    display: str = ":0"
    xauthority: str = ""  # "" leaves XAUTHORITY out (the X server lets the session's user in without one)
    watchdog_seconds: int = 30
    stop_seconds: int = 120  # the final snapshot of a large model plus the video's end
    start_seconds: int = 300  # loading a large checkpoint and drawing the first picture on a slow machine
    restart_seconds: int = 5
    restart_max_seconds: int = 120  # the back-off's ceiling, where systemd has one
    systemd_version: int = 0  # of the machine the unit is for; 0 = unknown (no back-off keys written)


BACKOFF_SINCE = 254  # the first systemd with RestartSteps= and RestartMaxDelaySec= (older ones warn about them)


def systemd_version() -> int:
    """The version of this machine's systemd (`systemctl --version`), 0 where there is none."""
    try:
        first = subprocess.run(["systemctl", "--version"], capture_output=True, text=True, timeout=10).stdout
        return int(first.split()[1])
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return 0


def unit_path(user_unit: bool, home: Path | None = None) -> Path:
    """Where systemd looks for the unit: the user's own units, or the system's."""
    if user_unit:
        config = os.environ.get("XDG_CONFIG_HOME") or str((home or Path.home()) / ".config")
        return Path(config) / "systemd" / "user" / UNIT_NAME
    return Path("/etc/systemd/system") / UNIT_NAME


def _escape(text: str, quote: bool = True) -> str:
    """One unit-file word: quoted for the shell-like splitting systemd does, % and $ doubled (its specifiers and
    variables)."""
    if "\n" in text or "\r" in text:
        raise UnitError(f"{text!r}: a line break cannot go into a systemd unit; rename the file or folder")
    return (shlex.quote(text) if quote else text).replace("%", "%%").replace("$", "$$")


def _environment(name: str, value: str) -> str:
    return "Environment=" + _escape(f"{name}={value}").replace("$$", "$")  # no $VARIABLES here, only %specifiers


def unit_text(settings: UnitSettings) -> str:
    """The whole unit file."""
    s = settings
    session = "graphical-session.target" if s.user_unit else "graphical.target"
    lines = [
        "# Written by `run_installation.py service install`; see docs/operations.md.",
        "[Unit]",
        f"Description=uncanny (Amplifying The Uncanny), live; run folder {_escape(str(s.run_dir), quote=False)}",
        f"After={session}",
        *([f"PartOf={session}"] if s.user_unit else []),
        "StartLimitIntervalSec=0",  # never give up relaunching a crash; the back-off is RestartSec
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"WatchdogSec={s.watchdog_seconds}",
        f"TimeoutStartSec={s.start_seconds}",
        f"TimeoutStopSec={s.stop_seconds}",
        "KillMode=mixed",
        "Restart=always",
        f"RestartSec={s.restart_seconds}",
        *(["RestartSteps=5", f"RestartMaxDelaySec={s.restart_max_seconds}"] if s.systemd_version >= BACKOFF_SINCE
          else []),
        f"RestartPreventExitStatus={EXIT_BAD_INPUT}",  # exit 75 (try again) and every other code relaunch
        *([] if s.user_unit else [f"User={_escape(s.user)}", "RemoveIPC=yes"]),
        f"WorkingDirectory={_escape(str(s.working_dir))}",
        _environment("DISPLAY", s.display),
        *([_environment("XAUTHORITY", s.xauthority)] if s.xauthority else []),
        _environment("PYTHONUNBUFFERED", "1"),  # its lines reach the journal as they are printed
        "ExecStart=" + " ".join(_escape(word) for word in s.command),
        "",
        "[Install]",
        f"WantedBy={session}",
        "",
    ]
    return "\n".join(lines)


def enable_commands(user_unit: bool) -> list[str]:
    """What the technician runs once the unit is written."""
    ctl = "systemctl --user" if user_unit else "sudo systemctl"
    return [f"{ctl} daemon-reload", f"{ctl} enable --now {UNIT_NAME}"]


def run_dir_of(unit: str) -> Path | None:
    """The --run-dir the unit's ExecStart passes, or None."""
    for line in unit.splitlines():
        if line.startswith("ExecStart="):
            words = shlex.split(line[len("ExecStart="):].replace("$$", "$").replace("%%", "%"))
            if "--run-dir" in words[:-1]:
                return Path(words[words.index("--run-dir") + 1])
    return None
