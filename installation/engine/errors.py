"""What the engine and its run folder raise; no torch here, so the fast commands and `service status` import it.
Each carries its exit code's kind (installation/exits.py)."""

from ..exits import BadInput, TryAgain


class EngineError(Exception):
    """The engine cannot start or go on; the message is one line."""


class EngineRefused(EngineError):
    """The engine cannot start with this model and run folder, and retrying cannot help; one line."""


class RunFolderError(EngineRefused, BadInput):
    """The run folder cannot be used (taken by another engine, another model's, unreadable)."""


class RunFolderUnavailable(EngineError, TryAgain):
    """The run folder cannot be used now but may be later (its disk is full or read-only where it must be made,
    another installation holds it): start again later; one line."""
