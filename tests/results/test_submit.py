"""Submission bundles: pack, validate, re-score, and refuse hostile archives before extracting them."""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import stat
import sys
import tempfile
import uuid
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import results_fixtures as fx  # noqa: E402

from hcbench import __version__  # noqa: E402
from hcbench.cards import get_card, resolve  # noqa: E402
from hcbench.cli import main as cli_main  # noqa: E402
from hcbench.data.types import AttributeMeta, DatasetSplit  # noqa: E402
from hcbench.io import sha256_file  # noqa: E402
from hcbench.metrics.attributes import attribute_metrics  # noqa: E402
from hcbench.results import submit  # noqa: E402
from hcbench.results.provenance import _params_of  # noqa: E402
from hcbench.results.store import read_record, record_path, write_record  # noqa: E402

REAL_SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "real-samples"
ATTR_METRICS = ("mA", "accuracy", "precision", "recall", "F1")


@pytest.fixture(autouse=True)
def _fixture_cards(monkeypatch):
    monkeypatch.setenv("HCBENCH_TASKS", str(fx.TASKS))
    monkeypatch.delenv("HCBENCH_DATA", raising=False)


# --------------------------------------------------------------------------- a fake attributes adapter
class FakeAttributesAdapter:
    """Test double for the attributes adapter (still being written when these tests were): ground
    truth is ``<root>/labels.npy``, predictions an ``.npz`` of sigmoid scores, and the metrics come
    from the real ``hcbench.metrics.attributes`` function, as the adapter contract prescribes."""

    family = "attributes"
    predictions_suffix = ".npz"

    def build_data(self, card, root, role, *, limit=None):
        labels = np.load(Path(root) / "labels.npy", allow_pickle=False)[:limit]
        split = DatasetSplit(card.dataset.name, card.dataset.split, "attributes", list(range(len(labels))),
                             AttributeMeta(card.dataset.name, tuple(f"a{i}" for i in range(labels.shape[1]))),
                             files=[Path(root) / "labels.npy"], extra={"labels": labels})
        return None, split

    def score(self, path, split, card):
        with np.load(path, allow_pickle=False) as z:
            scores = z["scores"]
        m = attribute_metrics(split.extra["labels"], scores)
        return {k: m[k] for k in ATTR_METRICS}


@pytest.fixture
def fake_attr(monkeypatch):
    import hcbench.adapters

    adapter = FakeAttributesAdapter()
    real = hcbench.adapters.get_adapter
    monkeypatch.setattr(hcbench.adapters, "get_adapter", lambda fam: adapter if fam == "attributes" else real(fam))
    return adapter


def _attr_tree(tmp: Path, tier: str = "full", backbones=("vit_tiny", "vit_small")) -> tuple[Path, Path]:
    """A results tree of pa100k_attr records whose metrics are the true scores of their predictions."""
    from hcbench.data.fingerprint import dataset_fingerprint

    rng = np.random.default_rng(0)
    data = tmp / "data"
    (data / "pa100k").mkdir(parents=True)
    labels = (rng.random((40, 6)) < 0.35).astype(np.uint8)
    np.save(data / "pa100k" / "labels.npy", labels)
    card = resolve(get_card("pa100k_attr"), tier)
    _, split = FakeAttributesAdapter().build_data(card, data / "pa100k", "eval", limit=card.schedule.eval_limit)
    results = tmp / "results"
    for i, b in enumerate(backbones):
        n = len(split.samples)
        scores = np.clip(labels[:n] * (0.5 + 0.1 * i) + rng.random(labels[:n].shape) * 0.55, 0, 1)
        rp = record_path(results, "mini", b, "pa100k_attr")
        rp.parent.mkdir(parents=True)
        pred = rp.with_name("pa100k_attr.predictions.npz")
        np.savez(pred, scores=scores)
        m = attribute_metrics(labels[:n], scores)
        params = _params_of(b, card.input.height, card.input.width)  # the true count: bundles recount it
        rec = fx.make_record(b, "pa100k_attr", {k: m[k] for k in ATTR_METRICS}, tier=tier, params=params,
                             predictions=(pred.name, sha256_file(pred)))
        rec.dataset.fingerprint = dataset_fingerprint(split, data / "pa100k")
        write_record(rp, rec)
        (rp.with_name("pa100k_attr.config.json")).write_text(json.dumps({"card_sha256": card.sha256}))
    return results, data


def _rewrite(src: Path, dst: Path, rel: str, mutate, fix_manifest: bool = True) -> Path:
    """Copy a bundle, passing ``rel``'s JSON through ``mutate`` (and re-hashing it in the manifest)."""
    with zipfile.ZipFile(src) as zin:
        entries = {n: zin.read(n) for n in zin.namelist()}
    doc = json.loads(entries[rel])
    mutate(doc)
    entries[rel] = json.dumps(doc, indent=2).encode()
    if fix_manifest:
        man = json.loads(entries["manifest.json"])
        man["files"][rel] = hashlib.sha256(entries[rel]).hexdigest()
        entries["manifest.json"] = json.dumps(man).encode()
    with zipfile.ZipFile(dst, "w") as zout:
        for n, data in entries.items():
            zout.writestr(n, data)
    return dst


REC = "mini/vit_tiny/pa100k_attr.json"


# --------------------------------------------------------------------------- pack
def test_pack_holds_records_predictions_configs_and_manifest(tmp_path):
    results, _ = _attr_tree(tmp_path)
    bundle = submit.pack(results, tmp_path / "out" / "sub.zip")
    with zipfile.ZipFile(bundle) as zf:
        names = sorted(zf.namelist())
        man = json.loads(zf.read("manifest.json"))
        blobs = {n: zf.read(n) for n in names}
    files = [f"mini/{b}/pa100k_attr{s}" for b in ("vit_small", "vit_tiny")
             for s in (".config.json", ".json", ".predictions.npz")]
    assert names == sorted(["manifest.json", *files])
    assert man["format"] == "hcbench.bundle/1" and man["hcbench"] == __version__ and man["records"] == 2
    assert sorted(man["files"]) == sorted(files)
    for n in files:  # every hash checked against hashlib on the bytes inside the zip and on disk
        assert man["files"][n] == hashlib.sha256(blobs[n]).hexdigest() == sha256_file(results / n)
    card = get_card("pa100k_attr")
    assert man["cards"] == [{"name": "pa100k_attr", "version": 1, "tier": "full", "sha256": resolve(card).sha256}]
    assert datetime.fromisoformat(man["created"].replace("Z", "+00:00")).tzinfo is not None
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic write left no temp file


def test_pack_refuses_records_whose_predictions_do_not_match(tmp_path):
    results, _ = _attr_tree(tmp_path)
    pred = results / "mini" / "vit_tiny" / "pa100k_attr.predictions.npz"
    np.savez(pred, scores=np.zeros((40, 6)))
    with pytest.raises(submit.BundleError, match=r"vit_tiny/pa100k_attr.json: predictions file .* sha256"):
        submit.pack(results, tmp_path / "b.zip")
    pred.unlink()
    with pytest.raises(submit.BundleError, match="is missing"):
        submit.pack(results, tmp_path / "b.zip")
    assert not (tmp_path / "b.zip").exists()


# --------------------------------------------------------------------------- validate
def test_packed_bundle_validates_and_rescores(tmp_path, fake_attr):
    results, data = _attr_tree(tmp_path)
    bundle = submit.pack(results, tmp_path / "sub.zip")
    assert submit.validate(bundle) == []
    assert submit.validate(bundle, rescore=True, root=data) == []  # a folder of datasets
    assert submit.validate(bundle, rescore=True, root=data / "pa100k") == []  # one dataset's folder


def test_hand_edited_metric_fails_rescore_naming_card_and_metric(tmp_path, fake_attr):
    results, data = _attr_tree(tmp_path)
    bundle = submit.pack(results, tmp_path / "sub.zip")
    true_ma = read_record(results / REC).metrics["mA"]
    edited = _rewrite(bundle, tmp_path / "edited.zip", REC, lambda d: d["metrics"].update(mA=true_ma + 0.02))
    assert submit.validate(edited) == []  # the manifest was re-hashed: only re-scoring can tell
    problems = submit.validate(edited, rescore=True, root=data)
    assert len(problems) == 1
    assert "card 'pa100k_attr' metric 'mA'" in problems[0] and REC in problems[0]
    assert f"recorded {true_ma + 0.02:.6f}, re-scored {true_ma:.6f}" in problems[0]


def test_smoke_tier_rescores_with_the_eval_limit(tmp_path, fake_attr):
    results, data = _attr_tree(tmp_path, tier="smoke")  # fixture card: smoke eval_limit 24 of 40
    rec = read_record(results / REC)
    with np.load(results / "mini/vit_tiny/pa100k_attr.predictions.npz") as z:
        assert z["scores"].shape == (24, 6)
    assert rec.card.tier == "smoke"
    assert submit.validate(submit.pack(results, tmp_path / "s.zip"), rescore=True, root=data) == []


def test_rescore_reports_missing_ground_truth_and_changed_ground_truth(tmp_path, fake_attr):
    results, data = _attr_tree(tmp_path)
    bundle = submit.pack(results, tmp_path / "sub.zip")
    problems = submit.validate(bundle, rescore=True, root=tmp_path / "nowhere")
    assert len(problems) == 2 and all("re-scoring failed" in p and "pa100k_attr" in p for p in problems)
    labels = np.load(data / "pa100k" / "labels.npy")
    labels[0] = 1 - labels[0]
    np.save(data / "pa100k" / "labels.npy", labels)
    problems = submit.validate(bundle, rescore=True, root=data)
    assert len(problems) == 2 and all("local ground truth" in p and "differs" in p for p in problems)


@pytest.mark.skipif(not (REAL_SAMPLES / "coco" / "test_coco.json").is_file(),
                    reason=f"real COCO samples not found at {REAL_SAMPLES / 'coco'}")
def test_rescore_with_the_pose_adapter_on_real_coco_samples(tmp_path):
    from hcbench.adapters import get_adapter
    from hcbench.data.fingerprint import dataset_fingerprint

    data = tmp_path / "data" / "coco"
    (data / "annotations").mkdir(parents=True)
    shutil.copy(REAL_SAMPLES / "coco" / "test_coco.json", data / "annotations" / "person_keypoints_val2017.json")
    shutil.copytree(REAL_SAMPLES / "coco", data / "val2017", ignore=shutil.ignore_patterns("*.json"))
    card = resolve(get_card("coco_pose"))
    adapter = get_adapter("pose")
    _, split = adapter.build_data(card, data, "eval")
    rng = np.random.default_rng(0)  # ground-truth keypoints moved by ~3 px: AP well inside (0, 1)
    preds = [{"index": i, "keypoints": s.keypoints[:, :2] + rng.normal(0, 3, (len(s.keypoints), 2)),
              "scores": np.full(len(s.keypoints), 0.9)} for i, s in enumerate(split.samples)]
    results = tmp_path / "results"
    rp = record_path(results, "mini", "vit_tiny", "coco_pose")
    rp.parent.mkdir(parents=True)
    pred = adapter.write_predictions(preds, split, card, rp.with_name("coco_pose.predictions.json"))
    metrics = adapter.score(pred, split, card)
    assert 0.3 < metrics["AP"] < 0.99
    rec = fx.make_record("vit_tiny", "coco_pose", {m: metrics[m] for m in card.eval.metrics},
                         params=_params_of("vit_tiny", card.input.height, card.input.width),
                         predictions=(pred.name, sha256_file(pred)))
    rec.dataset.fingerprint = dataset_fingerprint(split, data)
    write_record(rp, rec)
    bundle = submit.pack(results, tmp_path / "pose.zip")
    assert submit.validate(bundle, rescore=True, root=tmp_path / "data") == []
    rel = "mini/vit_tiny/coco_pose.json"
    edited = _rewrite(bundle, tmp_path / "e.zip", rel, lambda d: d["metrics"].update(AP=round(metrics["AP"] - 0.05, 4)))
    problems = submit.validate(edited, rescore=True, root=tmp_path / "data")
    assert len(problems) == 1 and "card 'coco_pose' metric 'AP'" in problems[0]


def test_stale_card_is_an_error_naming_the_card(tmp_path):
    results, _ = _attr_tree(tmp_path)
    bundle = submit.pack(results, tmp_path / "sub.zip")
    tasks = tmp_path / "tasks"
    shutil.copytree(fx.TASKS, tasks)
    card_file = tasks / "pa100k_attr.yaml"
    card_file.write_text(card_file.read_text().replace("lr: 1.0e-4", "lr: 2.0e-4").replace("version: 1", "version: 2"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HCBENCH_TASKS", str(tasks))
        problems = submit.validate(bundle)
    assert len(problems) == 2
    assert all("stale card 'pa100k_attr'" in p and "(version 1)" in p and "(version 2)" in p for p in problems)


def test_manifest_and_files_must_agree(tmp_path):
    results, _ = _attr_tree(tmp_path)
    bundle = submit.pack(results, tmp_path / "sub.zip")
    with zipfile.ZipFile(bundle) as zin:
        entries = {n: zin.read(n) for n in zin.namelist()}

    def write(name, ents):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            for n, d in ents.items():
                z.writestr(n, d)
        return submit.validate(tmp_path / name)

    changed = dict(entries, **{"mini/vit_small/pa100k_attr.config.json": b"{}"})
    assert write("changed.zip", changed) == [
        "changed.zip: mini/vit_small/pa100k_attr.config.json: sha256 differs from the manifest (changed after packing)"]
    extra = dict(entries, **{"mini/notes.txt": b"hello"})
    assert write("extra.zip", extra) == ["extra.zip: mini/notes.txt: in the bundle but not listed in the manifest"]
    missing = {n: d for n, d in entries.items() if n != "mini/vit_small/pa100k_attr.config.json"}
    assert write("missing.zip", missing) == [
        "missing.zip: mini/vit_small/pa100k_attr.config.json: listed in the manifest but not in the bundle"]
    no_manifest = {n: d for n, d in entries.items() if n != "manifest.json"}
    assert write("nomani.zip", no_manifest) == ["nomani.zip: manifest.json is missing"]


def test_schema_and_metric_range_problems_name_the_file(tmp_path):
    results, _ = _attr_tree(tmp_path)
    bundle = submit.pack(results, tmp_path / "sub.zip")
    bad = _rewrite(bundle, tmp_path / "bad.zip", REC, lambda d: d["metrics"].update(mA=1.7))
    problems = submit.validate(bad)
    assert len(problems) == 1 and REC in problems[0] and "'mA'=1.7 is not a fraction in [0, 1]" in problems[0]
    assert str(tempfile.gettempdir()) not in problems[0]  # reported by its path inside the bundle
    gone = _rewrite(bundle, tmp_path / "gone.zip", REC, lambda d: d.pop("backbone"))
    problems = submit.validate(gone)
    assert len(problems) == 1 and REC in problems[0] and "backbone" in problems[0]


# --------------------------------------------------------------------------- hostile archives
def _valid_entries(tmp_path) -> dict[str, bytes]:
    results, _ = _attr_tree(tmp_path)
    with zipfile.ZipFile(submit.pack(results, tmp_path / "ok.zip")) as z:
        return {n: z.read(n) for n in z.namelist()}


@pytest.fixture
def no_extraction(monkeypatch):
    """Fails the test if validate() gets as far as creating an extraction folder."""
    def refuse(*a, **k):
        raise AssertionError("validate() started extracting a bundle it should have refused")
    monkeypatch.setattr(submit.tempfile, "TemporaryDirectory", refuse)


class Canary:
    """Unpickling this creates ``path``: proof that something was unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


@pytest.mark.parametrize("bad, why", [
    ("../escape-{u}.json", "'..' component"),
    ("mini/../../escape-{u}.json", "'..' component"),
    ("/tmp/abs-{u}.json", "absolute path"),
    ("C:/abs-{u}.json", "absolute path"),
    ("mini\\..\\escape-{u}.json", "backslash"),
])
def test_paths_escaping_the_bundle_are_refused_before_extraction(tmp_path, bad, why, no_extraction):
    entries = _valid_entries(tmp_path)
    name = bad.format(u=uuid.uuid4().hex)
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:
        for n, d in entries.items():
            z.writestr(n, d)
        z.writestr(zipfile.ZipInfo(name), b"{}")
    problems = submit.validate(tmp_path / "evil.zip")
    assert len(problems) == 1 and "refused before extraction" in problems[0] and why in problems[0]
    assert not (Path(tempfile.gettempdir()) / Path(name.replace("\\", "/")).name).exists()


def test_symlinks_and_duplicate_names_are_refused(tmp_path, no_extraction):
    entries = _valid_entries(tmp_path)
    link = zipfile.ZipInfo("mini/vit_tiny/link.json")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as z:
        for n, d in entries.items():
            z.writestr(n, d)
        z.writestr(link, "/etc/passwd")
    problems = submit.validate(tmp_path / "link.zip")
    assert len(problems) == 1 and "symbolic link" in problems[0]
    with zipfile.ZipFile(tmp_path / "dup.zip", "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
        for n, d in entries.items():
            z.writestr(n, d)
        z.writestr(REC, entries[REC])
    problems = submit.validate(tmp_path / "dup.zip")
    assert len(problems) == 1 and "duplicate name" in problems[0] and REC in problems[0]
    with zipfile.ZipFile(tmp_path / "case.zip", "w") as z:
        for n, d in entries.items():
            z.writestr(n, d)
        z.writestr(REC.upper(), entries[REC])
    assert "duplicate name" in submit.validate(tmp_path / "case.zip")[0]


@pytest.mark.parametrize("suffix", [".pkl", ".pt", ".pth", ".pickle"])
def test_pickle_files_are_refused_unopened(tmp_path, suffix, no_extraction):
    entries = _valid_entries(tmp_path)
    canary = tmp_path / f"canary{suffix}"
    import pickle

    with zipfile.ZipFile(tmp_path / "p.zip", "w") as z:
        for n, d in entries.items():
            z.writestr(n, d)
        z.writestr(f"mini/vit_tiny/weights{suffix}", pickle.dumps(Canary(canary)))
    problems = submit.validate(tmp_path / "p.zip")
    assert len(problems) == 1 and "pickles" in problems[0] and f"weights{suffix}" in problems[0]
    assert not canary.exists()


def test_npz_holding_a_pickle_is_refused_and_never_unpickled(tmp_path):
    results, _ = _attr_tree(tmp_path)
    canary = tmp_path / "canary-npz"
    pred = results / "mini" / "vit_tiny" / "pa100k_attr.predictions.npz"
    np.savez(pred, scores=np.array([Canary(canary)], dtype=object))  # needs pickle to load
    rec = read_record(results / REC)
    rec.predictions.sha256 = sha256_file(pred)
    write_record(results / REC, rec)
    problems = submit.validate(submit.pack(results, tmp_path / "npz.zip"))
    assert problems == ["npz.zip: mini/vit_tiny/pa100k_attr.predictions.npz: holds pickled object arrays, refused "
                        "(arrays must be plain numeric/str dtypes)"]
    assert not canary.exists()


def test_not_a_zip_and_missing_file(tmp_path):
    (tmp_path / "x.zip").write_text("not a zip")
    assert "not a readable zip archive" in submit.validate(tmp_path / "x.zip")[0]
    assert "no such bundle file" in submit.validate(tmp_path / "none.zip")[0]


# --------------------------------------------------------------------------- CLI
def test_cli_pack_and_validate(tmp_path, capsys, fake_attr):
    results, data = _attr_tree(tmp_path)
    out = tmp_path / "cli.zip"
    assert cli_main(["submit", "pack", "--results", str(results), "--out", str(out), "--suite", "mini"]) == 0
    assert cli_main(["submit", "validate", str(out), "--rescore", "--root", str(data)]) == 0
    assert "bundle is valid" in capsys.readouterr().out
    edited = _rewrite(out, tmp_path / "e.zip", REC, lambda d: d["metrics"].update(F1=0.001))
    assert cli_main(["submit", "validate", str(edited), "--rescore", "--root", str(data)]) == 1
    text = capsys.readouterr().out
    assert "FAIL" in text and "card 'pa100k_attr' metric 'F1'" in text and "1 problem(s)" in text


# --------------------------------------------------------------------------- zip bombs
def _with_entry(tmp_path: Path, name: str, data: bytes, replace: str | None = None) -> Path:
    entries = _valid_entries(tmp_path)
    out = tmp_path / f"bomb-{uuid.uuid4().hex[:6]}.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, d in entries.items():
            if n != replace:
                z.writestr(n, d)
        z.writestr(name, data)
    return out


def test_zip_bomb_is_refused_from_its_header_before_extraction(tmp_path, no_extraction):
    """64 MiB of zeros deflate to ~64 KiB (ratio ~1000): refused from the central directory alone."""
    pred = "mini/vit_tiny/pa100k_attr.predictions.npz"
    bundle = _with_entry(tmp_path, pred, bytes(64 << 20), replace=pred)
    problems = submit.validate(bundle)
    assert len(problems) == 1 and "refused before extraction" in problems[0] and "zip bomb" in problems[0]
    assert pred in problems[0]


def test_extraction_budget_is_sized_from_the_cards(tmp_path, monkeypatch):
    """A predictions file may hold PRED_BYTES_PER_SAMPLE per evaluated sample (+ a margin); the
    smoke tier's eval_limit sizes it, and extraction stops at the first byte over."""
    from hcbench.results import bundle_io

    results, _ = _attr_tree(tmp_path, tier="smoke")
    bundle = submit.pack(results, tmp_path / "s.zip")
    limit = resolve(get_card("pa100k_attr"), "smoke").schedule.eval_limit
    with zipfile.ZipFile(bundle) as zf:
        allowance, total = bundle_io.extraction_budget(zf)
        pred = "mini/vit_tiny/pa100k_attr.predictions.npz"
        assert allowance[pred] == bundle_io.PRED_MARGIN_BYTES + limit * bundle_io.PRED_BYTES_PER_SAMPLE
        assert allowance["manifest.json"] == bundle_io.SMALL_FILE_BYTES
        assert total == sum(allowance[i.filename] for i in zf.infolist())
    assert submit.validate(bundle) == []  # a real bundle fits its budget
    # shrink the per-sample allowance below the real file: refused, and nothing half-written is kept
    monkeypatch.setattr(bundle_io, "PRED_MARGIN_BYTES", 0)
    monkeypatch.setattr(bundle_io, "PRED_BYTES_PER_SAMPLE", 8)
    problems = submit.validate(bundle)
    assert len(problems) == 1 and "cannot extract" in problems[0] and "its cards allow" in problems[0]


# --------------------------------------------------------------------------- relabelled results
def _relabel(tmp_path: Path, edit) -> list[str]:
    """Pack a results tree after ``edit(results)`` changed it (the manifest is made afresh, as a
    forger would), and return the validation problems."""
    results, _ = _attr_tree(tmp_path)
    for b in ("vit_tiny", "vit_small"):  # the run's effective config, as `hcbench run` writes it
        rp = record_path(results, "mini", b, "pa100k_attr")
        rec = read_record(rp)
        cfg = {"backbone": b, "seed": rec.run.seed, "card_sha256": rec.card.sha256}
        rp.with_name("pa100k_attr.config.json").write_text(json.dumps(cfg))
    assert submit.validate(submit.pack(results, tmp_path / "clean.zip")) == []
    edit(results)
    return submit.validate(submit.pack(results, tmp_path / "edited.zip"))


def _edit_record(results: Path, backbone: str, change) -> None:
    rp = record_path(results, "mini", backbone, "pa100k_attr")
    data = json.loads(rp.read_text())
    change(data)
    rp.write_text(json.dumps(data))


def test_relabelled_backbone_spec_is_caught(tmp_path):
    problems = _relabel(tmp_path, lambda r: _edit_record(r, "vit_tiny", lambda d: d["backbone"].update(spec="vit_base")))
    assert any("has" in p and "parameters" in p and "'vit_base'" in p for p in problems), problems
    assert any("config" in p and "backbone" in p for p in problems), problems


def test_relabelled_parameter_count_is_caught(tmp_path):
    problems = _relabel(tmp_path, lambda r: _edit_record(
        r, "vit_small", lambda d: d["backbone"].update(params=d["backbone"]["params"] // 4)))
    assert len(problems) == 1 and "relabelled backbone" in problems[0] and "vit_small" in problems[0]


def test_relabelled_seed_is_caught(tmp_path):
    problems = _relabel(tmp_path, lambda r: _edit_record(r, "vit_tiny", lambda d: d["run"].update(seed=3)))
    assert len(problems) == 1 and "seed=3" in problems[0] and "config" in problems[0]


def test_deleted_metric_is_caught(tmp_path):
    problems = _relabel(tmp_path, lambda r: _edit_record(r, "vit_tiny", lambda d: d["metrics"].pop("F1")))
    assert len(problems) == 1 and "['F1'] missing" in problems[0]


def test_failed_record_carrying_metrics_is_caught(tmp_path):
    problems = _relabel(tmp_path, lambda r: _edit_record(
        r, "vit_tiny", lambda d: d.update(status="failed", error="RuntimeError: out of memory")))
    assert len(problems) == 1 and "failed record carries metrics" in problems[0]


def test_one_run_under_two_backbone_folders_is_caught(tmp_path):
    def copy_run(results: Path) -> None:
        src = record_path(results, "mini", "vit_tiny", "pa100k_attr").parent
        dst = record_path(results, "mini", "timm:vit_tiny_patch16_224", "pa100k_attr").parent
        shutil.copytree(src, dst)
        _edit_record(results, "timm:vit_tiny_patch16_224", lambda d: d["backbone"].update(spec="timm:vit_tiny_patch16_224"))
        cfg = dst / "pa100k_attr.config.json"
        cfg.write_text(cfg.read_text().replace('"vit_tiny"', '"timm:vit_tiny_patch16_224"'))

    problems = _relabel(tmp_path, copy_run)
    assert len(problems) == 1 and "one run under two backbone names" in problems[0], problems
