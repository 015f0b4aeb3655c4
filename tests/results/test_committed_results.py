"""The records committed under ``results/`` are valid, were made by this checkout's code and
reproduce, and the README's recipe tables are exactly what ``hcbench leaderboard`` renders from
them (so the tables cannot drift from the records)."""

import json
import re
from pathlib import Path

from hcbench.cards import get_card, get_suite, load_card_file, resolve
from hcbench.cli import main
from hcbench.codeprint import card_code, changed_modules, code_modules
from hcbench.data.cards import get_dataset_card
from hcbench.results.store import load_records, read_record

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results" / "student-recipe"  # written by benchmarks/student_recipe.sh
TABLE = re.compile(r"<!-- recipe-table:start -->\n(.*?)<!-- recipe-table:end -->", re.S)


def is_current(rec) -> bool:
    """Recorded against the card as it is now (re-running the recipe would skip it)."""
    return rec.card.sha256 == resolve(get_card(rec.card.name), rec.card.tier).sha256


def test_committed_records_are_valid_and_complete():
    records = [rec for _, rec in load_records(RESULTS, "recipe")]  # raises on a malformed record
    by_backbone: dict[str, set[str]] = {}
    for rec in records:
        assert rec.status == "ok", (rec.backbone.spec, rec.card.name, rec.error)
        assert is_current(rec), f"{rec.backbone.spec}/{rec.card.name}: record of an older card version"
        by_backbone.setdefault(rec.backbone.spec, set()).add(rec.card.name)
    cards = set(get_suite("recipe").cards)
    assert by_backbone and all(got == cards for got in by_backbone.values()), by_backbone


def test_readme_recipe_table_is_the_committed_leaderboard(capsys):
    match = TABLE.search((REPO / "README.md").read_text())
    assert match is not None, "README.md lost its <!-- recipe-table:start/end --> block"
    assert main(["leaderboard", "--results", str(RESULTS), "--suite", "recipe", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.strip() == match.group(1).strip()


SEEDS = re.compile(r"<!-- recipe-seeds:start -->\n(.*?)<!-- recipe-seeds:end -->", re.S)


def seed_table() -> str:
    """The README's seed table rendered from the committed records: the five-family mean of each
    backbone at fine-tuning seeds 0 (``recipe/``), 1 and 2 (``seed-N/recipe/``), their mean and
    sample standard deviation, best mean first."""
    from statistics import mean, stdev

    from hcbench.results.leaderboard import leaderboard_frame

    runs = [leaderboard_frame(root, suite="recipe").overall
            for root in (RESULTS, RESULTS / "seed-1", RESULTS / "seed-2")]
    rows = []
    for backbone in runs[0].index:
        values = [100 * float(run[backbone]) for run in runs]
        rows.append((mean(values), f"| `{backbone}` | " + " | ".join(f"{v:.1f}" for v in values)
                     + f" | {mean(values):.1f} ± {stdev(values):.1f} |"))
    head = ["| backbone | mean, seed 0 | seed 1 | seed 2 | mean ± std |", "|---|---:|---:|---:|---:|"]
    return "\n".join(head + [row for _, row in sorted(rows, key=lambda r: -r[0])])


def test_seed_records_match_the_seed_0_backbones():
    backbones = {rec.backbone.spec: rec.backbone.checkpoint_sha256 for _, rec in load_records(RESULTS, "recipe")}
    for seed in (1, 2):
        records = [rec for _, rec in load_records(RESULTS / f"seed-{seed}", "recipe")]
        assert {rec.run.seed for rec in records} == {seed}
        got = {rec.backbone.spec: rec.backbone.checkpoint_sha256 for rec in records}
        assert got == backbones, f"seed {seed}: fine-tuned other backbones (or other weights) than seed 0"
        for rec in records:
            assert rec.status == "ok" and is_current(rec), (seed, rec.backbone.spec, rec.card.name)


def test_readme_seed_table_is_the_committed_records():
    match = SEEDS.search((REPO / "README.md").read_text())
    assert match is not None, "README.md lost its <!-- recipe-seeds:start/end --> block"
    expected = seed_table()
    assert match.group(1).strip() == expected, f"README seed table is stale; it should read:\n{expected}"


def test_recipe_teacher_card_is_valid():
    """The teacher card of the recipe lives outside tasks/ (it is not a benchmark entry) and
    trains on the synthetic parsing set."""
    card = load_card_file(REPO / "benchmarks" / "recipe" / "recipe_teacher_parsing.yaml")
    assert (card.family, card.dataset.name) == ("parsing", "synth_parsing")
    assert "recipe_teacher_parsing.yaml" in (REPO / "benchmarks" / "student_recipe.sh").read_text()


ROOTS = (RESULTS, RESULTS / "seed-1", RESULTS / "seed-2")
REMAKE = ("re-make them: rm -rf results/student-recipe students recipe-work && bash benchmarks/student_recipe.sh "
          "(about 1.5 h on 2 free cores), then update the README's recipe prose")


def test_committed_records_were_made_by_this_code():
    """A record's numbers are this checkout's only if the code that computes them is unchanged
    (``run.code``): any edit to a recipe family's adapter, evaluator, metric, reader, the engine or
    the backbones fails this test, naming the modules, until the records are re-made."""
    stale = []
    for root in ROOTS:
        for path, rec in load_records(root, "recipe"):
            if rec.run.code is not None and rec.run.code == card_code(rec.card.name):
                continue
            config = json.loads(path.with_name(path.name[: -len(".json")] + ".config.json").read_text())
            then = config.get("code", {}).get("modules")
            if not then:
                stale.append(f"{path.relative_to(REPO)}: made before records stored their code")
                continue
            card = get_card(rec.card.name)
            changed = changed_modules(then, code_modules(card.family, get_dataset_card(card.dataset.name).format))
            stale.append(f"{path.relative_to(REPO)}: made by other code (changed: {', '.join(changed)})")
    assert not stale, f"{len(stale)} committed records are stale; {REMAKE}:\n" + "\n".join(stale[:10])


def test_a_committed_record_reproduces(tmp_path: Path, synth_suite: Path, monkeypatch):
    """Re-running a committed run (random-init ViT-Ti on synth_attr, seed 0: the cheapest) gives
    the committed record's numbers exactly: same data, card, seed and code. (Its metrics were the
    same with one and two intra-op threads; the raw scores in the predictions file differ in the
    last bits, so that file's sha256 is not compared.)"""
    committed = read_record(RESULTS / "recipe" / "vit_tiny" / "synth_attr.smoke.json")
    monkeypatch.setenv("HCBENCH_WORKERS", "0")
    assert main(["--quiet", "run", "--backbone", "vit_tiny", "--card", "synth_attr", "--tier", "smoke",
                 "--synth", str(synth_suite), "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"),
                 "--device", "cpu", "--no-leaderboard"]) == 0
    [(_, again)] = load_records(tmp_path / "out")
    assert again.dataset.fingerprint == committed.dataset.fingerprint, "the synthetic data changed"
    assert again.identity == committed.identity and again.run.code == committed.run.code
    assert again.metrics == committed.metrics, REMAKE
