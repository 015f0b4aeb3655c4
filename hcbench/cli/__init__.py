"""The ``hcbench`` command. Thin: :mod:`~hcbench.cli.parser` declares the sub-commands and their
options, :mod:`~hcbench.cli.commands` handles each by calling library functions, and
:func:`main` turns a user's error into one line (exit code 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from hcbench.cli.parser import build_parser
from hcbench.errors import UserError, worker_message


def _includes(argv: list[str]) -> list[str]:
    """The ``--include`` files, read before the full parser is built: a plugin's family adds its
    own ``hcbench score <family>`` sub-command."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--include", action="append", default=[])
    return pre.parse_known_args(argv)[0].include


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from hcbench.registry import include

    try:
        for path in _includes(argv):
            include(path)
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # user errors: one clear line, no traceback; anything else is a bug and keeps it
        if _is_user_error(e) and not os.environ.get("HCBENCH_DEBUG"):
            print(f"hcbench: error: {_message(e)}", file=sys.stderr)
            return 2
        raise


def _is_user_error(e: BaseException) -> bool:
    """A :class:`~hcbench.errors.UserError`, or a file the user named that cannot be opened
    (the OS error carries the path). Builtin ``ValueError``/``KeyError``/``RuntimeError`` from
    hcbench's own code are bugs: they keep their traceback."""
    return isinstance(e, (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError))


def _message(e: BaseException) -> str:
    # KeyError subclasses (RegistryError) would print their message quoted; an error re-raised
    # from a DataLoader worker carries the worker's traceback as its text: its last line is the message
    return worker_message(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))


__all__ = ["build_parser", "main"]
