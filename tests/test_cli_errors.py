"""The command line prints user errors as one line (exit 2) and lets bugs keep their traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hcbench.cli import _is_user_error, main
from hcbench.errors import ConfigError, InputNotFoundError, ResumeError, UserError


def test_user_error_types_subclass_user_error_and_the_builtin_callers_catch():
    from hcbench.backbones import BackboneSpecError
    from hcbench.backbones.checkpoint import CheckpointError
    from hcbench.cards import CardError
    from hcbench.data.cards import DatasetCardError
    from hcbench.data.types import DataFormatError
    from hcbench.registry import RegistryError
    from hcbench.results.regress import RegressInputError
    from hcbench.results.store import RecordError

    for cls, builtin in [(DataFormatError, ValueError), (CardError, ValueError), (RegistryError, KeyError),
                         (DatasetCardError, ValueError), (BackboneSpecError, ValueError),
                         (CheckpointError, RuntimeError), (RecordError, ValueError),
                         (RegressInputError, ValueError), (ConfigError, ValueError),
                         (InputNotFoundError, FileNotFoundError), (ResumeError, ValueError)]:
        assert issubclass(cls, UserError) and issubclass(cls, builtin), cls
    assert _is_user_error(ConfigError("x")) and _is_user_error(FileNotFoundError(2, "no such file", "a.json"))
    for bug in (ValueError("x"), KeyError("x"), RuntimeError("x"), TypeError("x"), AttributeError("x")):
        assert not _is_user_error(bug)


def test_a_user_error_is_one_line_without_traceback(capsys):
    assert main(["run", "--backbone", "vit_tiny", "--card", "no_such_card", "--no-leaderboard"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hcbench: error: ") and "no_such_card" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("exc", [ValueError("bad internal state"), KeyError("missing_key"),
                                 RuntimeError("unexpected")])
def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path, exc):
    """A builtin error raised inside the library is not a user error: main() re-raises it."""
    import hcbench.results.regress as regress

    def broken(*a, **k):
        raise exc

    monkeypatch.setattr(regress, "compare", broken)
    with pytest.raises(type(exc)):
        main(["regress", "--baseline", str(tmp_path), "--current", str(tmp_path)])


def test_a_bug_prints_a_traceback_from_the_console_script(tmp_path):
    code = ("import sys, hcbench.results.regress as r\n"
            "def broken(*a, **k):\n    raise KeyError('oops')\n"
            "r.compare = broken\n"
            "from hcbench.cli import main\n"
            f"sys.exit(main(['regress', '--baseline', {str(tmp_path)!r}, '--current', {str(tmp_path)!r}]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr and "KeyError: 'oops'" in r.stderr
