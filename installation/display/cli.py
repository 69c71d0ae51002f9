"""`run_installation.py monitors`: the monitors this machine shows, numbered as `--monitor N` and `[display] monitor`
count them (glfw only: no torch, no GL context, a fast command)."""

from __future__ import annotations

import argparse
import json

from ..exits import TryAgain


def cmd_monitors(args: argparse.Namespace) -> None:
    from .monitors import NoDisplay, list_monitors  # glfw looks for its library as it loads: not for --help

    try:
        monitors = list_monitors()
    except NoDisplay as error:  # at boot the X server may not be up yet: exit 75, as a start would
        raise TryAgain(str(error)) from None
    if args.json:
        print(json.dumps([monitor.as_json() for monitor in monitors], indent=2))
        return
    for monitor in monitors:
        print(monitor.describe())
    print("choose one with --monitor N or part of its name, or [display] monitor in the preset")


def add_monitors_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `monitors` to the CLI's subcommands."""
    monitors = commands.add_parser("monitors", help="list the monitors (index, name, size, position, primary) for "
                                                    "--monitor and [display] monitor",
                                   description=__doc__)
    monitors.add_argument("--json", action="store_true", help="print them as JSON")
    monitors.set_defaults(handler=cmd_monitors)
    return monitors
