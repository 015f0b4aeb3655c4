"""The records committed under ``results/`` are valid, and the README's recipe table is exactly
what ``hcbench leaderboard`` renders from them (so the table cannot drift from the records)."""

import re
from pathlib import Path

from hcbench.cards import get_card, get_suite, resolve
from hcbench.cli import main
from hcbench.results.store import load_records

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results" / "student-recipe"  # written by benchmarks/student_recipe.sh
TABLE = re.compile(r"<!-- recipe-table:start -->\n(.*?)<!-- recipe-table:end -->", re.S)


def test_committed_records_are_valid_and_complete():
    records = [rec for _, rec in load_records(RESULTS, "smoke")]  # raises on a malformed record
    by_backbone: dict[str, set[str]] = {}
    for rec in records:
        assert rec.status == "ok", (rec.backbone.spec, rec.card.name, rec.error)
        current = resolve(get_card(rec.card.name), rec.card.tier).sha256  # not stale: re-running would skip it
        assert rec.card.sha256 == current, f"{rec.backbone.spec}/{rec.card.name}: record of an older card version"
        by_backbone.setdefault(rec.backbone.spec, set()).add(rec.card.name)
    cards = set(get_suite("smoke").cards)
    assert by_backbone and all(got == cards for got in by_backbone.values()), by_backbone


def test_readme_recipe_table_is_the_committed_leaderboard(capsys):
    match = TABLE.search((REPO / "README.md").read_text())
    assert match is not None, "README.md lost its <!-- recipe-table:start/end --> block"
    assert main(["leaderboard", "--results", str(RESULTS), "--suite", "smoke", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.strip() == match.group(1).strip()
