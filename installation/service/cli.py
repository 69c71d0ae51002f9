"""`run_installation.py service install|status`: the systemd unit for a gallery machine, and a readable view of
the status file for a remote check (ssh in, run `service status`)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..arguments import UsageError, checkpoint_or_default, default_run_dir, whole_number
from .unit import UNIT_NAME, UnitError, UnitSettings, enable_commands, run_dir_of, unit_path, unit_text

if TYPE_CHECKING:
    from ..presets import Preset

EXIT_STALE = 1  # `service status`: the file is there but old (the installation is gone or hung)


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
    settings = UnitSettings(command=tuple(command), working_dir=Path.cwd(), run_dir=run_dir, user_unit=args.user,
                            user=user, display=args.display or os.environ.get("DISPLAY") or ":0",
                            xauthority=args.xauthority if args.xauthority is not None
                            else os.environ.get("XAUTHORITY", ""),
                            watchdog_seconds=args.watchdog, stop_seconds=args.stop_timeout)
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


def cmd_status(args: argparse.Namespace) -> None:
    from ..frames import process_alive
    from ..engine.runfolder import RunFolder
    from ..live.status import STALE_INTERVALS, STATUS_FILE, STOPPED, THUMBNAIL_DIR, disk_free, find_status
    from ..live.logfile import LOG_FILE
    from ..messages import size_text

    run_dir = args.run_dir or _installed_run_dir()
    if run_dir is None:
        raise UsageError("no --run-dir given and no installed uncanny.service names one; pass --run-dir RUN_DIR")
    path = run_dir / STATUS_FILE
    try:
        path, status = find_status(run_dir)  # the run folder's, or the fallback's while the run folder failed
        if args.json:
            print(path.read_text(encoding="utf-8"), end="")
    except OSError as error:
        raise UsageError(f"{path}: cannot be read ({error.strerror or error}); is this the run folder, and has the "
                         "installation ever run on it?") from None
    except ValueError as error:
        raise UsageError(f"{path}: not a status file ({error}); is this an uncanny run folder?") from None
    now = time.time()
    stale = status.stale(now)
    if not args.json:
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
        print(f"uncanny status, {path}:")
        for name, value in rows:
            print(f"  {name:<11} {value}")
        if status.phase == STOPPED:
            print(f"STOPPED: the installation ended {_duration(status.age(now))} ago, not hung, and is not running "
                  "(the log or the journal says why)")
    if stale:
        gone = "" if process_alive(status.pid) else f"; process {status.pid} is not running"
        print(f"STALE: not rewritten for {_duration(status.age(now))}, more than {STALE_INTERVALS} times its "
              f"interval{gone}: the installation is stopped or hung. See `systemctl [--user] status uncanny` and "
              f"`journalctl [--user] -u uncanny` (--user for a user unit)", file=sys.stderr)
        raise SystemExit(EXIT_STALE)


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

    status = actions.add_parser("status", help="print RUN_DIR/status.json readably; exit 1 when it is stale")
    status.add_argument("--run-dir", type=Path, default=None,
                        help="the run folder (default: the one the installed uncanny.service runs)")
    status.add_argument("--json", action="store_true", help="print the file as it is")
    status.set_defaults(handler=cmd_status)
    return service
