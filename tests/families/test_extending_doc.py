"""docs/extending.md shows excerpts of the example plugins the tests run: each excerpt must still
be verbatim in its file, so the documentation cannot drift from the tested code."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "extending.md"
BLOCK = re.compile(r"```python\n# (docs/examples/[\w./]+)\n(.*?)```", re.S)


def test_every_excerpt_is_in_its_example_file():
    blocks = BLOCK.findall(DOC.read_text())
    assert {f for f, _ in blocks} == {"docs/examples/toy_family.py", "docs/examples/toy_pretrainer.py"}
    for rel, code in blocks:
        assert code.strip() in (REPO / rel).read_text(), f"docs/extending.md excerpt of {rel} drifted:\n{code}"


def test_the_doc_has_one_section_per_extension_point():
    heads = re.findall(r"^## (.+)$", DOC.read_text(), re.M)
    assert heads == ["Backbone", "Dataset (reader + dataset card)", "Task family", "Pretraining method"]
