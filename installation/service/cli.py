"""`run_installation.py service install|status`: the systemd unit for a gallery machine, and a readable view of
the status file for a remote check (ssh in, run `service status`)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..arguments import UsageError, checkpoint_or_default, default_run_dir, whole_number
from .unit import (UNIT_NAME, UnitError, UnitSettings, enable_commands, run_dir_of, systemd_version, unit_path,
                   unit_text)

if TYPE_CHECKING:
    from ..live.status import LiveStatus
    from ..presets import Preset

# `service status` exits with the Nagios / Icinga plugin codes, so a monitoring system runs it as a check as it is,
# and cron (anything but 0 is a problem) too. Its first line is the plugin's one-line verdict with performance data.
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
ENGINE_DOWN = ("crashed", "failed", "refused", "stopped")  # the picture stays up but the journey does not go on


def launcher() -> list[str]:
    """This interpreter and the script it is running (run_installation.py or the `uncanny` entry point), so the
    unit starts exactly what was tested; `python -m installation` where neither is known."""
    script = Path(sys.argv[0]).resolve()
    if script.name in ("run_installation.py", "uncanny") and script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "installation"]


def _absolute_if_file(text: str) -> str:
    """A preset or checkpoint given as a file becomes absolute (the unit may run from another folder); a preset
    name stays a name."""
    path = Path(text)
    return str(path.resolve()) if path.suffix or path.exists() else text


def _run_dir(args: argparse.Namespace, preset: Preset) -> Path:
    """--run-dir, or the installation's own default (runs/CHECKPOINT-NAME), made absolute."""
    if args.run_dir is not None:
        return args.run_dir.resolve()
    chosen = args.checkpoint or (Path(preset.model.checkpoint) if preset.model.checkpoint else None)
    return default_run_dir(checkpoint_or_default(chosen)).resolve()


def _check_installation_options(root: argparse.ArgumentParser, options: list[str], extra: list[str]) -> None:
    """The unit's installation options as the installation will parse them (`root`: the program's own parser): a
    bad one is refused now (argparse's one line, exit 2), not found by a service that fails at every login."""
    if root.parse_args(options).handler is not root.get_default("handler"):
        raise UsageError(f"the arguments after -- ({' '.join(extra)}) name a command; give installation "
                         "options only (see run_installation.py --help)")


def _session(args: argparse.Namespace) -> tuple[str, str]:
    """DISPLAY and XAUTHORITY for the unit: as given, else this shell's, with a warning where that is a guess: no
    local DISPLAY here (none, or an ssh tunnel's like localhost:10.0: `:0` is assumed), or a shell that is not the
    gallery session (over ssh, or without a display), whose XAUTHORITY is not the session's."""
    shell_display = os.environ.get("DISPLAY", "")
    display, guesses = args.display or shell_display, []
    if args.display is None and not shell_display.startswith(":"):
        display = ":0"
        guesses.append(f"DISPLAY {display} (this shell has {shell_display or 'none'})")
    xauthority = args.xauthority if args.xauthority is not None else os.environ.get("XAUTHORITY", "")
    over_ssh = bool(os.environ.get("SSH_CONNECTION"))
    if args.xauthority is None and (guesses or over_ssh):
        guesses.append(f"XAUTHORITY {xauthority or '(none)'} (this shell's{', over ssh' if over_ssh else ''})")
    if guesses:
        print(f"uncanny: warning: {' and '.join(guesses)} {'are guesses' if len(guesses) > 1 else 'is a guess'} for "
              "the gallery screen; pass --display and "
              "--xauthority as its graphical session has them (`echo $DISPLAY $XAUTHORITY` in a terminal there; GDM's "
              "is /run/user/UID/gdm/Xauthority, '' for none)", file=sys.stderr)
    return display, xauthority


def cmd_install(args: argparse.Namespace) -> None:
    from ..presets import load_preset
    from ..storage import atomic_write_bytes

    preset = load_preset(args.preset)  # a bad preset is one line now, not a crash loop later
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise UsageError(f"--checkpoint {args.checkpoint}: no such file; give the model file the service should "
                         "show (or leave it out for the embedded model)")
    run_dir = _run_dir(args, preset)
    command = [*launcher(), "--preset", _absolute_if_file(args.preset), "--run-dir", str(run_dir)]
    if args.checkpoint is not None:
        command += ["--checkpoint", str(args.checkpoint.resolve())]
    command += args.extra
    _check_installation_options(args.root_parser, command[len(launcher()):], args.extra)
    user = os.environ.get("SUDO_USER") or getpass.getuser()  # under sudo, the account that asked
    if not args.user and user == "root" and not args.print:
        raise UsageError("a system unit would run the installation as root; run `service install` as the gallery "
                         "user (with sudo only to write the file), or use --user")
    display, xauthority = _session(args)
    settings = UnitSettings(command=tuple(command), working_dir=Path.cwd(), run_dir=run_dir, user_unit=args.user,
                            user=user, display=display, xauthority=xauthority, watchdog_seconds=args.watchdog,
                            stop_seconds=args.stop_timeout, systemd_version=systemd_version())
    try:
        text = unit_text(settings)
    except UnitError as error:
        raise UsageError(str(error)) from None
    if args.print:
        print(text, end="")
        return
    path = unit_path(args.user)
    try:
        atomic_write_bytes(path, text.encode())  # its folder made; a failed write leaves no temporary file
    except OSError as error:
        raise UsageError(f"cannot write {path} ({error.strerror or error}); "
                         + ("check the folder's permissions" if args.user else "run it with sudo -E, or use --user"
                            )) from None
    print(f"wrote {path}: {UNIT_NAME}, run folder {run_dir}")
    print("enable it (it then starts at every login of this graphical session, now included):")
    for line in enable_commands(args.user):
        print(f"  {line}")
    logs = "journalctl --user -u uncanny -f" if args.user else "journalctl -u uncanny -f"
    print(f"check it: run_installation.py service status --run-dir {run_dir}; logs: {logs}")


def _installed_run_dir() -> Path | None:
    for user_unit in (True, False):
        try:
            found = run_dir_of(unit_path(user_unit).read_text(encoding="utf-8"))
        except OSError:
            continue
        if found is not None:
            return found
    return None


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes)
    return " ".join(parts[:2]) if parts else f"{seconds} s"


def _unknown(args: argparse.Namespace, reason: str) -> None:
    """Nothing to judge (not installed, never ran, not a status file): UNKNOWN, one line."""
    if args.json:
        print(json.dumps({"state": "UNKNOWN", "reason": reason}))
    print(f"uncanny UNKNOWN: {reason}", file=sys.stderr if args.json else sys.stdout)
    raise SystemExit(UNKNOWN)


def verdict(status: LiveStatus, now: float) -> tuple[str, int, str]:
    """The state of the installation that wrote `status` (RUNNING, ENGINE DOWN, STALE, STOPPED), its plugin exit
    code, and a few words on it."""
    from ..frames import process_alive
    from ..live.status import STALE_INTERVALS, STOPPED

    age = _duration(status.age(now))
    if status.phase == STOPPED:
        return "STOPPED", CRITICAL, f"the installation ended {age} ago, not hung, and is not running"
    if status.stale(now):
        gone = "" if process_alive(status.pid) else f"; process {status.pid} is not running"
        return "STALE", CRITICAL, (f"status.json not rewritten for {age}, more than {STALE_INTERVALS} times its "
                                   f"interval{gone}: the installation is stopped or hung")
    if status.engine_status in ENGINE_DOWN:
        return "ENGINE DOWN", WARNING, (f"the picture is up but the engine is {status.engine_status}: "
                                        f"{status.last_error or 'see the log'}")
    if status.storage:
        return "STORAGE", WARNING, f"the show goes on, but the run folder cannot be written: {status.storage}"
    return "RUNNING", OK, (f"iteration {status.iteration}, {status.fps:.1f} fps, {status.steps_per_second:.2f} "
                           f"steps/s, up {_duration(status.uptime)}")


def cmd_status(args: argparse.Namespace) -> None:
    from ..engine.runfolder import RunFolder
    from ..live.status import STATUS_FILE, THUMBNAIL_DIR, disk_free, find_status
    from ..live.logfile import LOG_FILE
    from ..messages import size_text

    run_dir = args.run_dir or _installed_run_dir()
    if run_dir is None:
        _unknown(args, "no --run-dir given and no installed uncanny.service names one (not installed?); pass "
                       "--run-dir RUN_DIR")
    path = run_dir / STATUS_FILE
    try:
        path, status = find_status(run_dir)  # the run folder's, or the fallback's while the run folder failed
    except OSError as error:
        _unknown(args, f"{path}: cannot be read ({error.strerror or error}); is this the run folder, and has the "
                       "installation ever run on it?")
    except ValueError as error:
        _unknown(args, f"{path}: not a status file ({error}); is this an uncanny run folder?")
    now = time.time()
    state, code, words = verdict(status, now)
    if args.json:
        print(json.dumps({"state": state, "code": code, "age": round(status.age(now), 1), **status.to_json()},
                         indent=1))
    else:
        perfdata = (f"iteration={status.iteration} fps={status.fps:.1f} steps_per_second={status.steps_per_second:.2f}"
                    f" engine_restarts={status.engine_restarts}c disk_free={status.disk_free}B "
                    f"age={status.age(now):.0f}s")
        print(f"uncanny {state}: {words} | {perfdata}")
        thumbnails = sorted((run_dir / THUMBNAIL_DIR).glob("*.jpg"))
        written = time.localtime(status.updated)
        rows = [
            ("written", f"{_duration(status.age(now))} ago ({time.strftime('%Y-%m-%d %H:%M:%S', written)}), every "
                        f"{status.every:g} s, by pid {status.pid}, version {status.version}"),
            ("phase", f"{status.phase or '-'}, {status.cycle} cycles completed"),
            ("iteration", f"{status.iteration} (engine {status.engine_status}, {status.steps_per_second:.2f} steps/s"
                          f"{', COLLAPSED' if status.collapsed else ''})"),
            ("fps", f"{status.fps:.1f}"),
            ("uptime", _duration(status.uptime)),
            ("restarts", f"{status.engine_restarts} engine restarts"),
            ("recording", status.recording or "no"),
            ("disk free", size_text(status.disk_free)),
            ("last error", status.last_error or "-"),
            ("message", status.last_message or "-"),
            ("storage", status.storage or "ok"),
            ("run folder", RunFolder(run_dir).health() or f"writable, {size_text(disk_free(run_dir))} free (now)"),
            ("model", status.model),
            ("thumbnails", f"{len(thumbnails)}, newest {thumbnails[-1]}" if thumbnails else "none yet"),
            ("log", str(run_dir / LOG_FILE)),
        ]
        print(f"{path}:")
        for name, value in rows:
            print(f"  {name:<11} {value}")
        if code == CRITICAL:
            print("see `systemctl [--user] status uncanny` and `journalctl [--user] -u uncanny` (--user for a user "
                  "unit): the last lines say why")
    if code:
        raise SystemExit(code)


def add_service_parser(commands: argparse._SubParsersAction, root: argparse.ArgumentParser
                       ) -> argparse.ArgumentParser:
    """Add `service install` and `service status` to the CLI's subcommands."""
    service = commands.add_parser("service", help="install the systemd unit for a gallery machine; show the status "
                                                  "file of a running installation")
    actions = service.add_subparsers(title="service commands", metavar="ACTION", required=True)

    install = actions.add_parser(
        "install", help="write (or --print) the systemd unit that keeps the installation running",
        description="Write uncanny.service: Type=notify with a watchdog, Restart=always (except exit code 2, a "
                    "configuration the installation refuses), KillMode=mixed. Arguments after -- go to the "
                    "installation as they are.")
    install.add_argument("--user", action="store_true",
                         help="a user unit in ~/.config/systemd/user, part of the graphical session (recommended); "
                              "without it a system unit in /etc/systemd/system that runs as you")
    install.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    install.add_argument("--preset", default="gallery", help="a preset name or .toml file (default gallery)")
    install.add_argument("--checkpoint", type=Path, default=None, help="the model (default: the embedded one)")
    install.add_argument("--run-dir", type=Path, default=None,
                         help="the run folder (default runs/CHECKPOINT-NAME under this folder, the unit's working "
                              "folder)")
    install.add_argument("--display", default=None, help="the X display (default $DISPLAY, else :0)")
    install.add_argument("--xauthority", default=None, help="the X authority file (default $XAUTHORITY; '' = none)")
    install.add_argument("--watchdog", type=whole_number(5, 3600), default=30,
                         help="seconds without a presented frame before systemd restarts it (default 30)")
    install.add_argument("--stop-timeout", type=whole_number(10, 3600), default=120,
                         help="seconds a stop may take (the final snapshot, the video's end; default 120)")
    install.add_argument("extra", nargs="*", help="more installation options, after --")
    install.set_defaults(handler=cmd_install, root_parser=root)  # its options are checked as the run's

    status = actions.add_parser(
        "status", help="is it running? RUN_DIR/status.json readably; exit 0 running, 1 engine down, 2 stale or "
                       "stopped, 3 unknown (Nagios plugin codes)",
        description="The installation's state from RUN_DIR/status.json: RUNNING (exit 0), ENGINE DOWN (1: the "
                    "picture is up, the engine is not), STALE (2: not rewritten lately, gone or hung), STOPPED (2: it "
                    "ended cleanly), UNKNOWN (3: not installed, never ran). The first line is a monitoring plugin's "
                    "verdict with performance data; docs/operations.md has the rest.")
    status.add_argument("--run-dir", type=Path, default=None,
                        help="the run folder (default: the one the installed uncanny.service runs)")
    status.add_argument("--json", action="store_true",
                        help="print the status file as JSON with its state, exit code and age added")
    status.set_defaults(handler=cmd_status)
    return service
