"""``hcbench list backbones`` from its rows cache: the same rows as a full listing, without
importing torch, and never served after a change it depends on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hcbench import listing

REPO = Path(__file__).resolve().parents[1]

LIST = """
import json, sys
from hcbench.listing import list_what
out = list_what("backbones", input_size=(256, 192), pattern=sys.argv[1], fmt="json")
print(json.dumps({"rows": json.loads(out), "torch": "torch" in sys.modules}))
"""


def _list(cache: Path, pattern: str = "*") -> dict:
    env = {**os.environ, "HCBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", LIST, pattern], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_warm_listing_imports_no_torch_and_gives_the_same_rows(tmp_path):
    first = _list(tmp_path)
    assert first["torch"]  # the first listing builds (on the meta device) and counts
    names = [r["name"] for r in first["rows"]]
    assert "vit_tiny" in names and len(names) >= 10 and all(r["params"] for r in first["rows"])
    assert (tmp_path / "backbone_rows.json").is_file() and (tmp_path / "backbone_stats.json").is_file()
    warm = _list(tmp_path)
    assert not warm["torch"] and warm["rows"] == first["rows"]
    vits = _list(tmp_path, "vit_*")
    assert not vits["torch"] and vits["rows"] == [r for r in first["rows"] if r["name"].startswith("vit_")]
    # a rows cache written for another key (other code or versions) is not trusted: rebuilt
    data = json.loads((tmp_path / "backbone_rows.json").read_text())
    data["256x192"]["key"] = "other code"
    data["256x192"]["rows"][0]["params"] = -1
    (tmp_path / "backbone_rows.json").write_text(json.dumps(data))
    again = _list(tmp_path)
    assert again["torch"] and again["rows"] == first["rows"]


def test_key_follows_source_versions_and_input_size(tmp_path, monkeypatch):
    import importlib.metadata as md

    monkeypatch.delitem(sys.modules, "hcbench.backbones", raising=False)  # as in a fresh `hcbench list`
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    key = listing._rows_key((256, 192), pkg)
    assert key is not None and key == listing._rows_key((256, 192), pkg)
    assert listing._rows_key((384, 128), pkg) != key
    (pkg / "sub" / "b.py").write_text("y = 3\n")  # an edit anywhere in the package
    edited = listing._rows_key((256, 192), pkg)
    assert edited != key
    (pkg / "sub" / "c.py").write_text("")  # a new module
    added = listing._rows_key((256, 192), pkg)
    assert added not in (key, edited)
    real_version = md.version
    monkeypatch.setattr(md, "version", lambda d: "9.9" if d == "timm" else real_version(d))
    assert listing._rows_key((256, 192), pkg) != added


def test_no_rows_cache_with_plugins_or_a_loaded_registry(tmp_path, monkeypatch):
    import importlib.metadata as md

    monkeypatch.delitem(sys.modules, "hcbench.backbones", raising=False)
    assert listing._rows_key((256, 192), tmp_path) is not None
    real = md.entry_points
    monkeypatch.setattr(md, "entry_points", lambda group=None, **kw: ["plugin"] if group == "hcbench.backbones"
                        else real(group=group, **kw))
    assert listing._rows_key((256, 192), tmp_path) is None  # a plugin's code is unknown until imported
    monkeypatch.setattr(md, "entry_points", real)
    monkeypatch.setitem(sys.modules, "hcbench.backbones", object())  # e.g. an --include file loaded it
    assert listing._rows_key((256, 192), tmp_path) is None


@pytest.mark.parametrize("env", [{"HCBENCH_CACHE": "/x/y"}, {"XDG_CACHE_HOME": "/xdg"}, {}])
def test_rows_cache_lives_next_to_the_counts_cache(env, monkeypatch):
    from hcbench.backbones.stats import cache_path

    for var in ("HCBENCH_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert listing._rows_cache_path().parent == cache_path().parent
