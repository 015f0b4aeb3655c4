"""Registries: lazy built-ins, entry-point plugins (a tiny one installed on a tmp path), --include."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hcbench.registry import Registry

REPO = Path(__file__).resolve().parents[1]


def _make_plugin_dist(root: Path, name: str, eps: dict[str, str], module_src: dict[str, str],
                      group: str = "hcbench.backbones") -> None:
    """A minimal installed distribution (dist-info with entry points) on a folder we put on sys.path."""
    for mod, src in module_src.items():
        (root / f"{mod}.py").write_text(textwrap.dedent(src))
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = [f"[{group}]"] + [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def _hcbench(args: list[str], pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = f"{pythonpath}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run([sys.executable, "-m", "hcbench.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


PLUGIN = """
    from hcbench.registry import BACKBONES

    @BACKBONES.register("tiny_plugin_vit", description="a plugin backbone")
    def build(img_size=(256, 192)):
        from hcbench.backbones.timm_backbone import TimmBackbone
        return TimmBackbone("vit_tiny_patch16_224", img_size=img_size, depth=2)
"""


def test_entry_point_plugin_is_listed_and_broken_one_is_reported(tmp_path: Path):
    _make_plugin_dist(tmp_path, "tiny_plugin", {"tiny": "tiny_plugin_mod", "broken": "broken_plugin_mod"},
                      {"tiny_plugin_mod": PLUGIN, "broken_plugin_mod": "raise ImportError('missing dependency xyz')\n"})
    r = _hcbench(["list", "backbones", "--format", "json", "--input", "64x32"], tmp_path)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["tiny_plugin_vit"]["source"] == "entry-point:tiny_plugin"
    assert rows["tiny_plugin_vit"]["params"] < 1_100_000  # depth-2 ViT-Ti (full depth: 5.5M)
    assert {"vit_tiny", "vit_small", "vit_base", "resnet50"} <= set(rows)  # the others still load
    assert "broken" in r.stderr and "missing dependency xyz" in r.stderr
    assert "ImportError: missing dependency xyz" in rows["broken"]["description"]


def test_include_registers_a_user_backbone(tmp_path: Path):
    user = tmp_path / "my_backbone.py"
    user.write_text(textwrap.dedent(PLUGIN).replace("tiny_plugin_vit", "my_included_vit"))
    r = _hcbench(["--include", str(user), "list", "backbones", "--format", "json", "--input", "64x32",
                  "--pattern", "my_*"])
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == ["my_included_vit"]
    assert rows[0]["source"].startswith("include:")


def test_registry_rejects_duplicates_suggests_and_filters():
    reg: Registry = Registry("thing", "hcbench.test-none")
    reg.add("alpha_one", object())
    reg.add("alpha_two", object())
    with pytest.raises(ValueError, match="already registered"):
        reg.add("alpha_one", object())
    assert reg.names("alpha_*") == ["alpha_one", "alpha_two"]
    with pytest.raises(KeyError, match="did you mean alpha_one"):
        reg.get("alpha_oen")


def test_import_is_light():
    code = ("import sys, hcbench.registry, hcbench.cli, hcbench.cards; from hcbench.registry import FAMILIES; "
            "FAMILIES.names(); hcbench.cards.list_cards(); "
            "print(any(m in sys.modules for m in ('torch', 'timm', 'pandas')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


FAMILY_PLUGIN = """
    from hcbench.families.base import Family, MetricKey

    FAMILY = Family(name="ep_toy", label="EP toy", metrics=(MetricKey("err", higher_is_better=False),),
                    adapter="ep_toy_mod:nothing", evaluator="ep_toy_mod:nothing")
"""


def test_a_family_object_is_loaded_from_its_entry_point(tmp_path: Path):
    """``[hcbench.families] ep_toy = "pkg.mod:FAMILY"`` names a Family object (not a callable)."""
    _make_plugin_dist(tmp_path, "ep_toy_dist", {"ep_toy": "ep_toy_mod:FAMILY"}, {"ep_toy_mod": FAMILY_PLUGIN},
                      group="hcbench.families")
    code = ("from hcbench.registry import FAMILIES; from hcbench.cards import higher_is_better; "
            "e = FAMILIES.entry('ep_toy'); print(e.source, e.obj.label, higher_is_better('err', 'ep_toy'))")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["entry-point:ep_toy_dist", "EP", "toy", "False"]
