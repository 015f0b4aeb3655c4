"""The leaderboard: a pure function of a set of result records.

One row per backbone, one column per card's primary metric, per-family means and an overall
mean. A missing result is shown as missing; it is never averaged as zero nor skipped
silently: a mean over an incomplete row is computed over what exists and *marked*
incomplete. Lower-is-better metrics (MR⁻²) enter means as ``1 - x`` so every mean is
higher-is-better.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hcbench.cards import CardError, get_card, get_suite, higher_is_better
from hcbench.data.types import FAMILIES
from hcbench.results.schema import ResultRecord
from hcbench.results.store import load_records

INCOMPLETE_MARK = "*"


@dataclass
class Board:
    cards: list[str]
    families: dict[str, str]
    primary: dict[str, str]
    higher: dict[str, bool]
    values: pd.DataFrame  # backbone x card, primary-metric fractions, NaN = missing
    family_means: pd.DataFrame  # backbone x family
    overall: pd.Series
    complete: pd.Series  # backbone -> every card present
    params: dict[str, int] = field(default_factory=dict)
    gflops: dict[str, float | None] = field(default_factory=dict)
    records: dict[tuple[str, str], ResultRecord] = field(default_factory=dict)
    tier: str | None = None
    suite: str | None = None

    @property
    def backbones(self) -> list[str]:
        return list(self.values.index)

    def family_complete(self, backbone: str, family: str) -> bool:
        cols = [c for c in self.cards if self.families[c] == family]
        return bool(cols) and not self.values.loc[backbone, cols].isna().any()


def _card_order(cards: set[str], families: dict[str, str], suite: str | None) -> list[str]:
    if suite:
        try:
            listed = get_suite(suite).cards
            return listed + sorted(cards - set(listed))
        except CardError:
            pass
    fam_rank = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(cards, key=lambda c: (fam_rank.get(families.get(c, ""), 99), c))


def leaderboard_frame(results: str | Path, suite: str | None = None, tier: str | None = None) -> Board:
    """Aggregate the records under ``results`` (optionally ``results/<suite>``) into a Board.

    Only one tier is ever mixed into a board: ``tier`` if given, else the tier most records
    have. Failed records count as missing. With several seeds the mean over seeds is shown.
    """
    pairs = load_records(results, suite)
    recs = [r for _, r in pairs if r.status == "ok"]
    if tier is None and recs:
        tier = Counter(r.card.tier for r in recs).most_common(1)[0][0]
    recs = [r for r in recs if r.card.tier == tier]

    families: dict[str, str] = {}
    primary: dict[str, str] = {}
    by_cell: dict[tuple[str, str], list[ResultRecord]] = {}
    params: dict[str, int] = {}
    gflops: dict[str, float | None] = {}
    for r in recs:
        families[r.card.name] = r.card.family
        primary[r.card.name] = r.primary
        by_cell.setdefault((r.backbone.spec, r.card.name), []).append(r)
        params.setdefault(r.backbone.spec, r.backbone.params)
        if r.backbone.gflops is not None:
            gflops.setdefault(r.backbone.spec, r.backbone.gflops)

    cards_seen = set(families)
    if suite:
        try:  # cards of the suite without any record still get a (missing) column
            for name in get_suite(suite).cards:
                if name not in families:
                    card = get_card(name)
                    families[name], primary[name] = card.family, card.eval.primary
            cards_seen |= set(get_suite(suite).cards)
        except CardError:
            pass
    cards = _card_order(cards_seen, families, suite)
    backbones = sorted({b for b, _ in by_cell})
    values = pd.DataFrame(index=pd.Index(backbones, name="backbone"), columns=cards, dtype=float)
    chosen: dict[tuple[str, str], ResultRecord] = {}
    for (b, c), rs in by_cell.items():
        values.loc[b, c] = sum(r.metrics[r.primary] for r in rs) / len(rs)
        chosen[(b, c)] = rs[0]
    higher = {c: higher_is_better(primary[c]) for c in cards}

    oriented = values.copy()
    for c in cards:
        if not higher[c]:
            oriented[c] = 1.0 - oriented[c]
    fams = [f for f in FAMILIES if any(families[c] == f for c in cards)]
    family_means = pd.DataFrame(
        {f: oriented[[c for c in cards if families[c] == f]].mean(axis=1, skipna=True) for f in fams},
        index=values.index,
    )
    overall = family_means.mean(axis=1, skipna=True) if fams else pd.Series(dtype=float)
    complete = ~values.isna().any(axis=1)
    order = overall.sort_values(ascending=False, na_position="last").index
    return Board(cards, families, primary, higher, values.loc[order], family_means.loc[order],
                 overall.loc[order], complete.loc[order], params, gflops, chosen, tier, suite)


# --------------------------------------------------------------------------- rendering
def _pct(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _rows(board: Board) -> tuple[list[str], list[list[str]]]:
    """Header and text cells shared by the table, markdown and csv renderings."""
    fams = list(board.family_means.columns)
    header = ["backbone", "params (M)"] + [f"{c} {board.primary[c]}{'' if board.higher[c] else ' ↓'}"
                                           for c in board.cards] + [f"{f} mean" for f in fams] + ["mean"]
    rows = []
    for b in board.backbones:
        cells = [b, f"{board.params.get(b, 0) / 1e6:.1f}"]
        cells += [_pct(board.values.loc[b, c]) for c in board.cards]
        for f in fams:
            mark = "" if board.family_complete(b, f) else INCOMPLETE_MARK
            v = board.family_means.loc[b, f]
            cells.append(_pct(v) + (mark if not math.isnan(v) else ""))
        ov = board.overall.loc[b]
        cells.append(_pct(ov) + ("" if board.complete.loc[b] or math.isnan(ov) else INCOMPLETE_MARK))
        rows.append(cells)
    return header, rows


FOOTER = ("values in %; — = no result; * = mean over an incomplete row (missing cards are not counted); "
          "↓ = lower is better (enters means as 100 − x)")


def render(board: Board, fmt: str = "table", tty: bool = False) -> str:
    if not board.backbones:
        return "no results found"
    header, rows = _rows(board)
    title = f"hcbench leaderboard{f' — suite {board.suite}' if board.suite else ''} (tier {board.tier})"
    if fmt == "json":
        out = []
        for b in board.backbones:
            out.append({
                "backbone": b, "params": board.params.get(b), "gflops": board.gflops.get(b),
                "cards": {c: (None if math.isnan(v) else v) for c, v in board.values.loc[b].items()},
                "family_means": {f: (None if math.isnan(v) else v) for f, v in board.family_means.loc[b].items()},
                "mean": None if math.isnan(board.overall.loc[b]) else float(board.overall.loc[b]),
                "complete": bool(board.complete.loc[b]),
            })
        return json.dumps({"suite": board.suite, "tier": board.tier, "primary": board.primary,
                           "higher_is_better": board.higher, "rows": out}, indent=2)
    if fmt == "csv":
        frame = pd.DataFrame(rows, columns=header)
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + f"\n\n{FOOTER}"
    if fmt == "html":
        frame = pd.DataFrame(rows, columns=header)
        return f"<h3>{title}</h3>\n" + frame.to_html(index=False, border=0) + f"\n<p>{FOOTER}</p>"
    if tty:
        from io import StringIO

        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, caption=FOOTER)
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for r in rows:
            table.add_row(*r)
        buf = StringIO()
        Console(file=buf, force_terminal=True, width=max(120, 12 * len(header))).print(table)
        return buf.getvalue().rstrip("\n")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt_row = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))  # noqa: E731
    return "\n".join([title, fmt_row(header), "  ".join("-" * w for w in widths), *map(fmt_row, rows), FOOTER])
