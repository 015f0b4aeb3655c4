"""The code fingerprint of records (:mod:`hcbench.codeprint`): which modules count, what changes it."""

import sys
from pathlib import Path

import pytest

from hcbench.codeprint import card_code, changed_modules, code_fingerprint, code_modules, module_hashes


@pytest.fixture
def pkg(tmp_path: Path, monkeypatch):
    """A package ``cpkg``: ``a`` imports ``b`` lazily, ``c`` for typing only, ``d`` relatively."""
    root = tmp_path / "cpkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text(
        '"""Module a."""\nfrom typing import TYPE_CHECKING\nfrom . import d\n'
        'if TYPE_CHECKING:\n    from cpkg import c\n\n'
        'def f(x):\n    """Doc."""\n    from cpkg.b import g  # lazy\n    return g(x) + d.K\n')
    (root / "b.py").write_text("import os\n\ndef g(x):\n    return x * 2\n")
    (root / "c.py").write_text("T = int\n")
    (root / "d.py").write_text("K = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for m in [m for m in sys.modules if m == "cpkg" or m.startswith("cpkg.")]:
        del sys.modules[m]


def _hashes(root: Path) -> dict[str, str]:
    from hcbench import codeprint

    codeprint._parse.cache_clear()  # the files change under the same paths
    return module_hashes(["cpkg.a"])


def test_closure_follows_lazy_and_relative_imports_not_typing_only(pkg: Path):
    assert set(_hashes(pkg)) == {"cpkg.a", "cpkg.b", "cpkg.d"}  # c: TYPE_CHECKING only; os: other package


def test_comments_docstrings_and_layout_do_not_count_code_does(pkg: Path):
    before = _hashes(pkg)
    b = pkg / "b.py"
    b.write_text('"""Now documented."""\nimport os\n\n\ndef g(x):  # doubles\n    """Twice x."""\n    return (x * 2)\n')
    assert _hashes(pkg) == before
    b.write_text("import os\n\ndef g(x):\n    return x * 3\n")
    after = _hashes(pkg)
    assert changed_modules(before, after) == ["cpkg.b"]
    (pkg / "c.py").write_text("T = float\n")  # typing-only import: not part of the code
    assert _hashes(pkg) == after


def test_a_family_code_is_its_adapter_evaluator_metric_reader_engine_and_backbones():
    mods = code_modules("pose", "coco_keypoints")
    for m in ("hcbench.adapters.pose", "hcbench.families.pose_eval", "hcbench.metrics.oks", "hcbench.data.readers.coco",
              "hcbench.engine.runner", "hcbench.engine.loops", "hcbench.backbones.vit", "hcbench.backbones.zoo",
              "hcbench.cards"):
        assert m in mods, m
    for m in mods:  # storage, printing, the registry's lookup and the synthetic writer never count
        assert not m.startswith(("hcbench.results", "hcbench.synth", "hcbench.cli")), m
        assert m not in ("hcbench.engine.progress", "hcbench.registry", "hcbench.io"), m
    assert not any(m.startswith("hcbench.adapters.") and m not in ("hcbench.adapters.pose", "hcbench.adapters.base",
                                                                  "hcbench.adapters.pose_codec") for m in mods)
    assert code_fingerprint("pose", "coco_keypoints") != code_fingerprint("reid", "market1501")
    assert code_fingerprint("pose", "coco_keypoints") == code_fingerprint("pose", "coco_keypoints")


def test_card_code_of_known_and_unknown_cards():
    assert card_code("synth_pose") is not None and card_code("synth_pose").startswith("sha256:")
    assert card_code("synth_pose") == code_fingerprint("pose", "coco_keypoints")
    assert card_code("no_such_card") is None
