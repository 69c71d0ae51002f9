"""The exit-code rule every command follows, so that systemd and a monitor can tell what to do with a failed start.

- 0: done (a run stopped cleanly, a command did what it was asked).
- 1: it ran and something went wrong on the way (an encoder died, a journey failed): the output says what.
- EXIT_BAD_INPUT (2): input that can never work by itself: a bad flag, preset or checkpoint, a run folder of another
  model. Nothing was started and nothing written; the service does not relaunch it (`RestartPreventExitStatus`).
- EXIT_TRY_AGAIN (75, sysexits' EX_TEMPFAIL): the input is fine but something the start needs is not there *now*: the
  OSC port is held, no display or GPU yet at boot, another installation holds the run folder. Nothing was written; the
  service relaunches it with its back-off until it comes up.

Errors carry their kind: `BadInput` and `TryAgain` are the bases the command line maps to those two codes, so the
mapping needs no import of the (heavy) modules that raise them.
"""

EXIT_BAD_INPUT = 2  # argparse's own exit code for a bad flag, and ours for every other refused input
EXIT_TRY_AGAIN = 75


class BadInput(Exception):
    """Input that can never work as given; one line naming the problem and the fix. Exit EXIT_BAD_INPUT."""


class TryAgain(Exception):
    """A start that cannot run now but may later (a busy port, no display yet); one line. Exit EXIT_TRY_AGAIN."""


def exit_code(error: BaseException) -> int | None:
    """The exit code of a refusal, or None for an error that is neither kind (a bug: let it raise)."""
    if isinstance(error, TryAgain):
        return EXIT_TRY_AGAIN
    if isinstance(error, BadInput):
        return EXIT_BAD_INPUT
    return None
