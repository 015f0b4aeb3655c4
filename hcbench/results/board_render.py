"""Rendering a leaderboard :class:`~hcbench.results.leaderboard.Board`: a terminal table fitted to
the console width (headers wrapped, per-card columns of multi-card families dropped first, and a
note naming what was dropped), markdown, csv, json and html. Every format carries the footnotes that
say what a row aggregates and which records are not shown.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from hcbench.results.fmt import significant
from hcbench.results.leaderboard import INCOMPLETE_MARK, Board


# --------------------------------------------------------------------------- rendering
def _seed_list(seeds: list[int]) -> str:
    """0,1,2 -> "0-2"; 0,2 -> "0,2"."""
    s = sorted(set(seeds))
    if len(s) >= 3 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}-{s[-1]}"
    return ",".join(map(str, s))


def _pct(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _with_std(mean: float, std: float | None, sep: str) -> str:
    text = _pct(mean)
    if std is not None and not math.isnan(std) and text != "—":
        text += f"{sep}±{sep}{100 * std:.1f}"
    return text


def _several_seeds(board: Board) -> bool:
    return any(len(s) > 1 for s in board.seeds.values())


@dataclass
class _Col:
    key: str
    header: str  # may hold "\n" (table rendering wraps there)
    kind: str  # name | meta | card | family | mean
    cells: list[str]


def _columns(board: Board, sep: str = "") -> list[_Col]:
    """Every column of the text renderings, in print order. Family means only for families with
    several cards (a one-card family's mean repeats the card); ``sep`` goes before ``±``."""
    rows = board.backbones
    multi = board.multi_card_families
    one_card = {c for c in board.cards if board.families[c] not in multi}
    cols = [_Col("backbone", "backbone", "name", list(rows)),
            _Col("params", "params (M)", "meta", [significant(board.params.get(b, 0) / 1e6) for b in rows]),
            _Col("seeds", "seeds", "meta", [_seed_list(board.seeds.get(b, [])) for b in rows])]
    for c in board.cards:
        cells = []
        for b in rows:
            n, most = int(board.counts.loc[b, c]), len(board.seeds.get(b, []))
            text = _with_std(board.values.loc[b, c], board.std.loc[b, c], sep)
            cells.append(text + (f" (n={n})" if 0 < n < most else ""))
        label = f"{c}\n{board.primary[c]}{'' if board.higher[c] else ' ↓'}"
        cols.append(_Col(c, label, "family" if c in one_card else "card", cells))
    for f in multi:
        cells = []
        for b in rows:
            v = board.family_means.loc[b, f]
            mark = "" if board.family_complete(b, f) or math.isnan(v) else INCOMPLETE_MARK
            cells.append(_pct(v) + mark)
        cols.append(_Col(f"mean_{f}", f"{f}\nmean", "family", cells))
    cells = []
    for b in rows:
        ov = board.overall.loc[b]
        text = _with_std(ov, board.overall_std.loc[b] if board.overall_std is not None else None, sep)
        cells.append(text + ("" if board.complete.loc[b] or math.isnan(ov) else INCOMPLETE_MARK))
    cols.append(_Col("mean", "mean", "mean", cells))
    return cols


def footnotes(board: Board, source: str = "") -> list[str]:
    """What the numbers mean and what is not shown; one sentence per line."""
    notes = ["values in %; — = no result"]
    if _several_seeds(board):
        notes[-1] += ("; a±s = mean ± sample std over the row's seeds (n=k: a cell with fewer seeds); "
                      "the mean's ± is over the per-seed means")
    if not board.complete.all():
        notes[-1] += f"; {INCOMPLETE_MARK} = mean over an incomplete row (missing cards are not counted)"
    if not all(board.higher.values()):
        notes[-1] += "; ↓ = lower is better (enters means as 100 − x)"
    notes[-1] += "; mean = over families" + (" (each family's cards averaged first)" if board.multi_card_families
                                              else "")
    split = [b for b, i in board.identity.items() if i.get("folder")]
    if split:
        notes.append("[folder]: the same run (card, seed) exists in several results folders, so each folder "
                     "has its own row")
    if board.other_code:
        n = board.other_code
        notes.append(f"{n} shown record{'s were' if n != 1 else ' was'} made by other code than this hcbench's "
                     "(the record's run.code differs; their numbers may not reproduce: `hcbench run` re-makes them)")
    if board.hidden:
        parts = [f"{n} record{'s' if n != 1 else ''} {reason}" + (f" ({detail})" if detail else "")
                 for reason, n, detail in board.hidden]
        notes.append(f"not shown{f' from {source}' if source else ''}: " + "; ".join(parts))
    else:
        notes.append(f"every record{f' under {source}' if source else ''} is shown")
    return notes


def _widths(cols: list[_Col], width: int | None, boxed: bool) -> list[int]:
    """Each column's width: the widest cell (numbers never wrap), headers folded down to at most
    that (not below 6), the backbone name folded at 24; spare room up to ``width`` unfolds them."""
    full, least = [], []
    for c in cols:
        cell = max((len(x) for x in c.cells), default=1)
        head = max(len(line) for line in c.header.split("\n"))
        full.append(max(cell, head))
        least.append(min(max(cell, len(c.header)), 24) if c.kind == "name" else max(cell, min(head, max(cell, 6))))
    if width is None:
        return full
    spare = width - _total(least, boxed)
    out = list(least)
    for i in sorted(range(len(cols)), key=lambda i: cols[i].kind != "name"):  # the name first, then left to right
        grow = min(spare, full[i] - out[i])
        if grow > 0:
            out[i] += grow
            spare -= grow
    return out


def _wrap_header(header: str, width: int) -> str:
    """Break header lines longer than ``width`` after an underscore (synth_/parsing) where one fits."""
    out = []
    for line in header.split("\n"):
        while len(line) > width:
            cut = line.rfind("_", 0, width)
            if cut <= 0:
                break
            out.append(line[:cut + 1])
            line = line[cut + 1:]
        out.append(line)
    return "\n".join(out)


def _total(widths: list[int], boxed: bool) -> int:
    # each column: one padding space either side and a rule; the outer edges only when boxed
    return sum(widths) + (3 * len(widths) + 1 if boxed else 3 * (len(widths) - 1))


def _fit(cols: list[_Col], width: int, boxed: bool) -> tuple[list[_Col], list[str]]:
    """Drop columns until the table fits ``width``: cards of multi-card families first (their
    family mean stays), then params, then family columns (right to left), then seeds."""
    cols = list(cols)
    dropped: list[str] = []
    for keys in (("card",), ("params",), ("family",), ("seeds",)):
        while _total(_widths(cols, None, boxed), boxed) > width and \
                _total(_widths(cols, width, boxed), boxed) > width:
            idx = [i for i, c in enumerate(cols) if c.kind in keys or c.key in keys]
            if not idx:
                break
            dropped.append(cols.pop(idx[-1]).key)
    return cols, dropped


def _rich(board: Board, title: str, notes: list[str], width: int | None, tty: bool) -> str:
    from io import StringIO

    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    every = _columns(board)
    cols, dropped = every, []
    if width is not None:
        cols, dropped = _fit(every, width, boxed=tty)
        if dropped:
            names = [c.key for c in every if c.key in dropped]
            notes = notes + [f"not shown at {width} columns: {', '.join(names)} "
                             "(a wider terminal, or --format markdown/csv/json, shows every column)"]
    widths = _widths(cols, width, boxed=tty)
    table = Table(title=title, box=box.HEAVY_HEAD if tty else box.SIMPLE_HEAD, show_edge=tty, pad_edge=tty,
                  title_justify="left" if not tty else "center")
    for c, w in zip(cols, widths, strict=True):
        table.add_column(Text(_wrap_header(c.header, w), overflow="fold"), justify="left" if c.kind == "name" else "right",
                         overflow="fold", width=w)
    for i in range(len(board.backbones)):
        table.add_row(*(Text(c.cells[i]) for c in cols))  # Text: "[folder]" is not rich markup
    buf = StringIO()
    console = Console(file=buf, force_terminal=tty, no_color=not tty, width=max(width or 0, _total(widths, tty)),
                      highlight=False, color_system="standard" if tty else None, soft_wrap=False)
    console.print(table, crop=False)
    text = buf.getvalue().rstrip("\n")
    if not tty:
        text = "\n".join(line.rstrip() for line in text.splitlines())
    wrapped = []
    for note in notes:
        if width is None:
            wrapped.append(note)
        else:
            wrapped += [line.plain.rstrip() for line in Text(note).wrap(console, width)]
    return text + "\n" + "\n".join(wrapped)


def render(board: Board, fmt: str = "table", tty: bool = False, width: int | None = None, source: str = "") -> str:
    """The board as ``table`` (plain text; ``tty``: rich box drawing), ``markdown``, ``csv``,
    ``json`` or ``html``. ``width``: fit the table into this many columns (a terminal's width;
    with ``tty`` and no width, the terminal's as rich detects it); the other formats keep every column."""
    if not board.backbones:
        msg = "no results found"
        if board.hidden:
            msg += "; " + footnotes(board, source)[-1]
        return msg
    title = f"hcbench leaderboard{f' — suite {board.suite}' if board.suite else ''} (tier {board.tier})"
    notes = footnotes(board, source)
    if fmt == "json":
        out = []
        for b in board.backbones:
            out.append({
                "backbone": b, **board.identity.get(b, {}), "params": board.params.get(b),
                "gflops": board.gflops.get(b), "seeds": board.seeds.get(b, []),
                "cards": {c: (None if math.isnan(v) else v) for c, v in board.values.loc[b].items()},
                "std": {c: (None if math.isnan(v) else v) for c, v in board.std.loc[b].items()},
                "n": {c: int(v) for c, v in board.counts.loc[b].items()},
                "family_means": {f: (None if math.isnan(v) else v) for f, v in board.family_means.loc[b].items()},
                "mean": None if math.isnan(board.overall.loc[b]) else float(board.overall.loc[b]),
                "mean_std": None if math.isnan(board.overall_std.loc[b]) else float(board.overall_std.loc[b]),
                "complete": bool(board.complete.loc[b]),
            })
        hidden = [{"reason": r, "count": n, "detail": d} for r, n, d in board.hidden]
        return json.dumps({"suite": board.suite, "tier": board.tier, "primary": board.primary,
                           "higher_is_better": board.higher, "rows": out, "hidden": hidden,
                           "made_by_other_code": board.other_code}, indent=2)
    cols = _columns(board, sep=" " if fmt in ("markdown", "html") else "")
    header = [c.header.replace("\n", " ") for c in cols]
    rows = [[c.cells[i] for c in cols] for i in range(len(board.backbones))]
    if fmt == "csv":
        frame = pd.DataFrame(rows, columns=header)
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + [":---:" if c.kind == "meta" and c.key == "seeds" else "---:"
                                           for c in cols[1:]]) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n\n" + "<br>\n".join(notes)
    if fmt == "html":
        frame = pd.DataFrame(rows, columns=header)
        return f"<h3>{title}</h3>\n" + frame.to_html(index=False, border=0) + "".join(f"\n<p>{n}</p>" for n in notes)
    if tty and width is None:
        from rich.console import Console

        width = Console().width
    return _rich(board, title, notes, width, tty)
