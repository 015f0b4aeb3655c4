"""Exception types for input the user can fix.

The command line prints a :class:`UserError` as one line naming the file, record or option at
fault (exit code 2) and lets every other exception keep its traceback: a ``KeyError`` or
``ValueError`` from hcbench's own code is a bug to report, not a message to hide.

Each package's error types subclass :class:`UserError` and, where callers already catch a
builtin (``ValueError``, ``KeyError``, ``FileNotFoundError``), that builtin too. This module is
a bottom layer: it imports nothing from hcbench.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can fix: a file, a record, an option or a name. No traceback."""


class ConfigError(UserError, ValueError):
    """An option value or a combination of options that cannot work (``--batch-size``, ``--resume``)."""


class InputNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named (or that a default points to) does not exist."""


class ResumeError(UserError, ValueError):
    """A checkpoint exists but belongs to another run (its identity differs) or is unreadable."""


def worker_message(text: str) -> str:
    """The original message of an error a torch DataLoader worker re-raised in the main process.

    torch rebuilds a worker's exception as ``type("Caught X in DataLoader worker process N.\n
    Original Traceback ...")``: the type survives, the message becomes a whole traceback. The
    user needs its last line ("path: cannot decode image: ..."), which this returns; any other
    text is returned unchanged."""
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    head, sep, rest = last.partition(": ")
    return rest if sep and head.replace(".", "").replace("_", "").isalnum() else last


__all__ = ["ConfigError", "InputNotFoundError", "ResumeError", "UserError", "worker_message"]
