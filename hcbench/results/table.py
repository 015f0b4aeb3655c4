"""Paper tables (``hcbench table``): booktabs LaTeX or GitHub Markdown from result records.

One row per backbone with its parameter count and FLOPs, cards grouped by family under
multicolumn headers with a per-family mean, the best value per column in bold and the second
underlined. Ranking follows each metric's direction (MR⁻² is lower-is-better) and is done on
the values *as printed* (percent, one decimal), so two cells that read the same get the same
mark. Means over an incomplete row are starred, never ranked, and explained in a footnote.
The table is a pure function of the records (via :func:`leaderboard_frame`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hcbench.cards import CardError, get_card, higher_is_better
from hcbench.results.fmt import significant
from hcbench.results.leaderboard import Board, leaderboard_frame


class _FamilyLabels(Mapping[str, str]):
    """Family name -> table heading, read from the family registry (``Family.label``) when used."""

    @staticmethod
    def _labels() -> dict[str, str]:
        from hcbench.families.base import families

        return {f.name: f.label for f in families()}

    def __getitem__(self, family: str) -> str:
        return self._labels()[family]

    def __iter__(self) -> Iterator[str]:
        return iter(self._labels())

    def __len__(self) -> int:
        return len(self._labels())


FAMILY_LABELS: Mapping[str, str] = _FamilyLabels()
# Paper-style column labels for the HCB-15 cards (and the usual extensions); other cards
# show their own name.
CARD_LABELS = {
    "coco_pose": "COCO", "mpii_pose": "MPII", "aic_pose": "AIC", "crowdpose_pose": "CrowdPose",
    "ochuman_pose": "OCHuman", "humanart_pose": "Human-Art", "wholebody_pose": "WholeBody",
    "lip_parsing": "LIP", "cihp_parsing": "CIHP", "h36m_parsing": "H3.6M", "atr_parsing": "ATR",
    "crowdhuman_det": "CrowdHuman", "citypersons_det": "CityPersons",
    "market_reid": "Market", "msmt_reid": "MSMT17", "cuhk03_reid": "CUHK03",
    "pa100k_attr": "PA-100K", "peta_attr": "PETA", "rapv2_attr": "RAPv2",
}
_METRIC_LATEX = {"MR-2": r"MR$^{-2}$", "AP50": r"AP$_{50}$", "AP75": r"AP$_{75}$", "APm": r"AP$_{M}$",
                 "APl": r"AP$_{L}$", "accuracy": "Acc", "precision": "Prec", "recall": "Rec", "pixel_acc": "pAcc",
                 "mean_acc": "mAcc", "rank1": "R1", "rank5": "R5", "rank10": "R10"}
_METRIC_MD = {"MR-2": "MR⁻²", "AP50": "AP<sub>50</sub>", "AP75": "AP<sub>75</sub>", "APm": "AP<sub>M</sub>",
              "APl": "AP<sub>L</sub>", "accuracy": "Acc", "precision": "Prec", "recall": "Rec", "pixel_acc": "pAcc",
              "mean_acc": "mAcc", "rank1": "R1", "rank5": "R5", "rank10": "R10"}
MISSING = {"latex": "--", "markdown": "–"}


@dataclass
class Column:
    """One numeric column of the table; values are fractions (NaN = missing)."""

    family: str
    card: str | None  # None for a mean column
    metric: str | None  # None for a mean column
    higher: bool
    values: dict[str, float]
    starred: set[str] = field(default_factory=set)  # backbones whose (mean) value is over an incomplete row

    @property
    def is_mean(self) -> bool:
        return self.card is None


def rank_cells(values: Sequence[float | None], higher: bool, skip: Sequence[bool] | None = None) -> list[int]:
    """1 for the best, 2 for the second best, 0 otherwise, comparing values as printed (percent, 1 decimal).

    Ties share a mark; the second best is the next distinct printed value. A column needs two
    values for a best and three for a second (with two rows "second" is just "last"); a column
    where every value reads the same gets no mark.
    """
    skip = skip or [False] * len(values)
    shown = [None if v is None or math.isnan(v) or s else round(100 * v, 1) for v, s in zip(values, skip, strict=True)]
    present = [v for v in shown if v is not None]
    if len(present) < 2:
        return [0] * len(values)
    distinct = sorted(set(present), reverse=higher)
    if len(distinct) == 1:  # every row reads the same: nothing stands out
        return [0] * len(values)
    best = distinct[0]
    second = distinct[1] if len(distinct) > 1 and len(present) >= 3 else None
    return [1 if v is not None and v == best else 2 if v is not None and v == second else 0 for v in shown]


# --------------------------------------------------------------------------- model
def _card_metrics(card: str, primary: str, seen: set[str]) -> list[str]:
    """Metric columns of one card for ``--metrics all``: the card's list, else what the records hold."""
    try:
        listed = list(get_card(card).eval.metrics)
    except CardError:
        listed = []
    ordered = [m for m in listed if m in seen] + sorted(seen - set(listed))
    return [primary] + [m for m in ordered if m != primary]


def _all_metric_values(board: Board) -> dict[tuple[str, str], dict[str, float]]:
    """Every metric per (row, card), averaged over the same records (seeds) as the board's cell."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for key, recs in board.cell_records.items():
        cell: dict[str, list[float]] = {}
        for r in recs:
            for m, v in r.metrics.items():
                if v is not None:
                    cell.setdefault(m, []).append(v)
        out[key] = {m: sum(vs) / len(vs) for m, vs in cell.items()}
    return out


def build_columns(results: str | Path, board: Board, backbones: list[str], metrics: str = "primary") -> list[Column]:
    """The table's numeric columns in print order: per family its cards, then its mean; then the overall mean."""
    if metrics not in ("primary", "all"):
        raise ValueError(f"--metrics must be 'primary' or 'all', not {metrics!r}")
    allv = _all_metric_values(board) if metrics == "all" else {}
    cols: list[Column] = []
    families = list(board.family_means.columns)
    for fam in families:
        cards = [c for c in board.cards if board.families[c] == fam]
        for card in cards:
            if metrics == "primary":
                names = [board.primary[card]]
            else:
                seen = {m for b in backbones for m in allv.get((b, card), {})}
                names = _card_metrics(card, board.primary[card], seen)
            for m in names:
                if m == board.primary[card]:
                    vals = {b: float(board.values.loc[b, card]) for b in backbones}
                else:
                    vals = {b: allv.get((b, card), {}).get(m, math.nan) for b in backbones}
                cols.append(Column(fam, card, m, higher_is_better(m, fam), vals))
        if len(cards) > 1:  # a one-card family's mean would just repeat (or invert) that card
            vals = {b: float(board.family_means.loc[b, fam]) for b in backbones}
            starred = {b for b in backbones if not board.family_complete(b, fam) and not math.isnan(vals[b])}
            cols.append(Column(fam, None, None, True, vals, starred))
    if families:
        vals = {b: float(board.overall.loc[b]) for b in backbones}
        starred = {b for b in backbones if not board.complete.loc[b] and not math.isnan(vals[b])}
        cols.append(Column("", None, None, True, vals, starred))
    return cols


def _select(board: Board, backbones: list[str] | None) -> list[str]:
    if not backbones:
        return board.backbones
    unknown = [b for b in backbones if b not in board.backbones]
    if unknown:
        raise ValueError(f"no results for backbone(s) {', '.join(unknown)}; known: {', '.join(board.backbones)}")
    return list(dict.fromkeys(backbones))


def _missing(board: Board, rows: list[str]) -> dict[str, list[str]]:
    return {b: [c for c in board.cards if math.isnan(board.values.loc[b, c])] for b in rows
            if not board.complete.loc[b]}


# --------------------------------------------------------------------------- rendering helpers
def _latex_escape(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(repl.get(ch, ch) for ch in text)


def _md_escape(text: str) -> str:
    return text.replace("|", r"\|")


def _card_label(card: str) -> str:
    return CARD_LABELS.get(card, card)


def _metric_label(metric: str, fmt: str) -> str:
    arrow = "" if higher_is_better(metric) else (r"$\downarrow$" if fmt == "latex" else " ↓")
    if fmt == "latex":
        return _METRIC_LATEX.get(metric, _latex_escape(metric)) + arrow
    return _METRIC_MD.get(metric, _md_escape(metric)) + arrow


def _num(x: float | None, digits: int = 1) -> str | None:
    return None if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _tex(command: str, arg: str) -> str:
    return "\\" + command + "{" + arg + "}"


def _multicolumn(n: int, label: str) -> str:
    return _tex("multicolumn", str(n)) + "{c}{" + label + "}"


def _cell(value: float, rank: int, star: bool, fmt: str) -> str:
    text = _num(100 * value)
    if text is None:
        return MISSING[fmt]
    if fmt == "latex":
        text = _tex("textbf", text) if rank == 1 else _tex("underline", text) if rank == 2 else text
        return text + (r"$^{*}$" if star else "")
    text = f"**{text}**" if rank == 1 else f"<u>{text}</u>" if rank == 2 else text
    return text + ("\\*" if star else "")


def family_runs(cols: list[Column]) -> list[tuple[str, int, int]]:
    """(key, first, last) runs of consecutive equal keys over the columns, 0-based."""
    runs: list[tuple[str, int, int]] = []
    for i, c in enumerate(cols):
        if runs and runs[-1][0] == c.family:
            runs[-1] = (c.family, runs[-1][1], i)
        else:
            runs.append((c.family, i, i))
    return runs


def _notes(board: Board, rows: list[str], cols: list[Column], fmt: str) -> list[str]:
    lower = [c for c in cols if not c.is_mean and not c.higher]
    pct = r"\%" if fmt == "latex" else "%"
    arrow = r"$\downarrow$" if fmt == "latex" else "↓"
    bold, under = ((r"\textbf{bold}", r"\underline{underlined}") if fmt == "latex" else ("**bold**", "<u>underlined</u>"))
    notes = [f"Values in {pct} ({board.tier} tier). Best per column in {bold}, second {under}."]
    if any(c.is_mean for c in cols):
        minus = "$100 - x$" if fmt == "latex" else "100 − x"
        extra = f"; {arrow} metrics (lower is better) enter as {minus}" if lower else ""
        notes[-1] += f" Means are over the primary metrics{extra}."
    several = {b: board.seeds.get(b, []) for b in rows if len(board.seeds.get(b, [])) > 1}
    if several:
        esc = _latex_escape if fmt == "latex" else _md_escape
        what = "; ".join(f"{esc(b)}: seeds {', '.join(map(str, s))}" for b, s in several.items())
        notes.append(f"Mean over fine-tuning seeds ({what}).")
    missing = _missing(board, rows)
    if missing:
        esc = _latex_escape if fmt == "latex" else _md_escape
        star = "$^{*}$" if fmt == "latex" else "\\*"
        what = "; ".join(f"{esc(b)} lacks {', '.join(esc(_card_label(c)) for c in cs)}" for b, cs in missing.items())
        notes.append(f"{star} Incomplete row, mean over the available cards only ({what}).")
    return notes


# --------------------------------------------------------------------------- LaTeX
def _latex(board: Board, rows: list[str], cols: list[Column], metrics: str) -> str:
    n = len(cols)
    off = 4  # 1-based LaTeX column index of the first numeric column (after name, params, FLOPs)
    fam_runs = [r for r in family_runs(cols) if r[0]]
    head1 = [""] * 3 + [""] * n
    rules1 = []
    for fam, a, b in fam_runs:
        head1[3 + a] = _multicolumn(b - a + 1, FAMILY_LABELS.get(fam, _latex_escape(fam)))
        rules1.append(_tex("cmidrule(lr)", f"{off + a}-{off + b}"))
    # second header row: card names (spanning their metric columns in --metrics all)
    head2 = ["Backbone", "Params", "FLOPs"]
    rules2 = []
    i = 0
    while i < n:
        c = cols[i]
        if c.is_mean:
            head2.append("Mean")  # row 3 says which: "all" for the overall mean
            i += 1
            continue
        j = i
        while j + 1 < n and cols[j + 1].card == c.card:
            j += 1
        label = _latex_escape(_card_label(c.card))
        head2.append(label if j == i else _multicolumn(j - i + 1, label))
        head2 += [""] * (j - i)  # placeholders that line() drops under the multicolumn
        if j > i:
            rules2.append(_tex("cmidrule(lr)", f"{off + i}-{off + j}"))
        i = j + 1
    head3 = ["", "(M)", "(G)"] + [_metric_label(c.metric, "latex") if c.metric else ("" if c.family else "all")
                                  for c in cols]

    def line(cells: list[str]) -> str:
        # drop the empty cells a multicolumn swallowed
        out, skip = [], 0
        for cell in cells:
            if skip:
                skip -= 1
                continue
            out.append(cell)
            if cell.startswith(r"\multicolumn{"):
                skip = int(cell[len(r"\multicolumn{"):].split("}")[0]) - 1
        return " & ".join(out) + r" \\"

    body = []
    ranks = [rank_cells([c.values[b] for b in rows], c.higher, [b in c.starred for b in rows]) for c in cols]
    for r, b in enumerate(rows):
        params = board.params.get(b)
        cells = [_latex_escape(b), _num(params / 1e6 if params is not None else None) or "--",
                 significant(board.gflops.get(b), missing="--")]
        cells += [_cell(c.values[b], ranks[k][r], b in c.starred, "latex") for k, c in enumerate(cols)]
        body.append(" & ".join(cells) + r" \\")

    spec = "lrr" + "r" * n
    what = "primary metrics" if metrics == "primary" else "all metrics"
    suite = _latex_escape(board.suite or "all records")
    label = (board.suite or "results").replace("_", "-")
    notes = _notes(board, rows, cols, "latex")
    out = [
        f"% hcbench table: suite {board.suite or '-'}, tier {board.tier}, {what}. Generated from result records.",
        r"% Needs \usepackage{booktabs} and \usepackage{graphicx} (the box shrinks only if wider than \linewidth).",
        r"\begin{table*}[t]",
        r"\centering",
        _tex("caption", f"Results on the hcbench {suite} suite ({board.tier} tier)."),
        _tex("label", f"tab:hcbench-{label}"),
        r"\setlength{\tabcolsep}{4pt}",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        _tex("begin", "tabular") + "{" + spec + "}",
        r"\toprule",
        line(head1),
        " ".join(rules1),
        line(head2),
    ]
    if rules2:
        out.append(" ".join(rules2))
    out += [line(head3), r"\midrule", *body, r"\bottomrule", r"\end{tabular}}", r"\par\smallskip",
            r"\begin{minipage}{\linewidth}\footnotesize", *[note + r"\par" for note in notes],
            r"\end{minipage}", r"\end{table*}"]
    return "\n".join(x for x in out if x)


# --------------------------------------------------------------------------- Markdown
def _markdown(board: Board, rows: list[str], cols: list[Column]) -> str:
    header = ["Backbone", "Params (M)", "FLOPs (G)"]
    for c in cols:
        if c.is_mean:
            header.append(f"{FAMILY_LABELS.get(c.family, c.family)} mean" if c.family else "Mean (all)")
        else:
            header.append(f"{_md_escape(_card_label(c.card))} {_metric_label(c.metric, 'markdown')}")
    lines = ["| " + " | ".join(header) + " |", "|:---|" + "---:|" * (len(header) - 1)]
    ranks = [rank_cells([c.values[b] for b in rows], c.higher, [b in c.starred for b in rows]) for c in cols]
    for r, b in enumerate(rows):
        params = board.params.get(b)
        cells = [_md_escape(b), _num(params / 1e6 if params is not None else None) or MISSING["markdown"],
                 significant(board.gflops.get(b), missing=MISSING["markdown"])]
        cells += [_cell(c.values[b], ranks[k][r], b in c.starred, "markdown") for k, c in enumerate(cols)]
        lines.append("| " + " | ".join(cells) + " |")
    fams = " · ".join(f"{FAMILY_LABELS.get(f, f)}: {', '.join(_card_label(c) for c in board.cards if board.families[c] == f)}"
                      for f in board.family_means.columns)
    return "\n".join(lines) + "\n\n" + "\n".join([f"Families — {fams}.", *_notes(board, rows, cols, "markdown")])


def render_table(results_dir: str | Path, suite: str | None = None, fmt: str = "latex",
                 backbones: list[str] | None = None, metrics: str = "primary", tier: str | None = None) -> str:
    """The paper table for the records under ``results_dir`` (``fmt``: ``latex`` or ``markdown``)."""
    if fmt not in ("latex", "markdown"):
        raise ValueError(f"table format must be 'latex' or 'markdown', not {fmt!r}")
    results_dir = Path(results_dir)
    if not results_dir.exists():
        raise FileNotFoundError(f"results folder {results_dir} does not exist")
    board = leaderboard_frame(results_dir, suite=suite, tier=tier)
    if not board.backbones:
        raise ValueError(f"no result records under {results_dir}" + (f" for suite {suite!r}" if suite else ""))
    rows = _select(board, backbones)
    cols = build_columns(results_dir, board, rows, metrics)
    return _latex(board, rows, cols, metrics) if fmt == "latex" else _markdown(board, rows, cols)
