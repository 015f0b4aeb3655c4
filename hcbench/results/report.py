"""A self-contained static HTML report (``hcbench report``) plus paper-ready figure files.

``<out>/index.html`` needs nothing at view time: CSS and JS are inline and the two charts are
inline SVG. It holds the sortable leaderboard (click a header; vanilla JS; ``#sort=<key>`` or
``#sort=<key>:asc`` in the URL pre-sorts), a radar chart with one polygon per backbone over
the suite's cards (the DPAL/SAIP figure), and a parameters-versus-mean-score scatter. The
same two figures are written as PNG and PDF beside it for papers.

Radar axes are per-card min–max normalised over the backbones shown (as those papers draw
them, so that differences of a point are visible); each spoke is labelled with its range.
Lower-is-better metrics (MR⁻²) are flipped so that outward is always better.
"""

from __future__ import annotations

import html
import io
import math
import re
from datetime import datetime, timezone
from pathlib import Path

from hcbench import __version__
from hcbench.io import atomic_write_bytes, atomic_write_text
from hcbench.results.fmt import significant
from hcbench.results.leaderboard import Board, leaderboard_frame
from hcbench.results.table import CARD_LABELS, FAMILY_LABELS, Column, build_columns, family_runs, rank_cells

FIGURES = ("radar", "scatter")
_RC = {"svg.hashsalt": "hcbench", "svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10,
       "pdf.fonttype": 42}  # fixed salt: same records, same SVG ids; TrueType text stays editable in PDFs
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


def _label(card: str) -> str:
    return CARD_LABELS.get(card, card)


def _metric(board: Board, card: str) -> str:
    m = board.primary[card].replace("MR-2", "MR⁻²")
    return m + ("" if board.higher[card] else " ↓")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# --------------------------------------------------------------------------- figures
def radar_figure(board: Board):
    """One polygon per backbone over the board's cards; outward is better on every spoke."""
    import numpy as np
    from matplotlib.figure import Figure

    cards = board.cards
    n = len(cards)
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = fig.add_subplot(projection="polar")
    ax.set_theta_offset(np.pi / 2)  # first card at the top, then clockwise like the papers
    ax.set_theta_direction(-1)
    oriented = board.values.copy()
    for c in cards:
        if not board.higher[c]:
            oriented[c] = 1.0 - oriented[c]
    lo, hi = oriented.min(axis=0, skipna=True), oriented.max(axis=0, skipna=True)
    absolute = len(board.backbones) == 1  # min-max of one value is degenerate: draw the value itself
    for i, b in enumerate(board.backbones):
        r = []
        for c in cards:
            v, a, z = oriented.loc[b, c], lo[c], hi[c]
            if absolute:
                r.append(float(v))
            else:
                r.append(math.nan if math.isnan(v) else 0.25 + 0.75 * ((v - a) / (z - a) if z > a else 1.0))
        r_closed = np.array(r + r[:1])
        t_closed = np.append(angles, angles[0])
        color = _COLORS[i % len(_COLORS)]
        (line,) = ax.plot(t_closed, r_closed, "-o", color=color, lw=1.6, ms=3.5,
                          label=b + ("" if board.complete.loc[b] else " *"))
        line.set_gid(f"bb-{i}")
        if board.complete.loc[b]:
            (poly,) = ax.fill(t_closed, r_closed, color=color, alpha=0.08)
            poly.set_gid(f"fill-{i}")
    ax.set_xticks(angles)
    ax.set_xticklabels([f"{_label(c)}\n{_metric(board, c)}" for c in cards], fontsize=8)
    ax.set_xlim(0, 2 * np.pi)  # a full circle, never autoscaled to a wedge
    ax.set_ylim(0, 1.08)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0] if absolute else [0.25, 0.625, 1.0])
    ax.set_yticklabels(["25", "50", "75", "100"] if absolute else [], fontsize=6, color="#666")
    ax.grid(alpha=0.4)
    ax.spines["polar"].set_alpha(0.3)
    for t, c in zip(angles, cards, strict=True):  # each spoke's range, worst at the inner ring and best at the rim
        if absolute:
            break
        vals = board.values[c].dropna()
        if len(vals):
            worst, best = (vals.min(), vals.max()) if board.higher[c] else (vals.max(), vals.min())
            box = {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75}
            ax.text(t, 0.25, f"{100 * worst:.1f}", fontsize=6, color="#666", ha="center", va="center", bbox=box)
            ax.text(t, 1.0, f"{100 * best:.1f}", fontsize=6, color="#222", ha="center", va="center", bbox=box)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(3, len(board.backbones)), fontsize=8,
              frameon=False)
    suite = f" — {board.suite}" if board.suite else ""
    scale = "% (lower-is-better as 100 − x)" if absolute else "min–max per spoke"
    ax.set_title(f"Primary metric per card{suite} ({scale})", pad=18)
    return fig


def scatter_figure(board: Board):
    """Parameters (M) against the mean score over families; hollow markers for incomplete rows."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    xs = {b: board.params.get(b, 0) / 1e6 for b in board.backbones}
    pos = [x for x in xs.values() if x > 0]
    for i, b in enumerate(board.backbones):
        y = board.overall.loc[b]
        if math.isnan(y):
            continue
        color = _COLORS[i % len(_COLORS)]
        full = bool(board.complete.loc[b])
        coll = ax.scatter([xs[b]], [100 * y], s=55, color=color if full else "white", edgecolors=color,
                          linewidths=1.6, zorder=3)
        coll.set_gid(f"bb-{i}")
        ax.annotate(b + ("" if full else " *"), (xs[b], 100 * y), textcoords="offset points", xytext=(6, 5),
                    fontsize=8, color=color)
    if pos and min(pos) > 0 and max(pos) / min(pos) > 8 and len(pos) == len(xs):
        ax.set_xscale("log")
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("mean over families (%)")
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.15)
    suite = f" — {board.suite}" if board.suite else ""
    ax.set_title(f"Size versus mean score{suite}")
    if not board.complete.all():
        ax.text(0.01, 0.01, "* hollow: mean over an incomplete row", transform=ax.transAxes, fontsize=7,
                color="#555", va="bottom")
    return fig


def _svg(fig, prefix: str) -> str:
    """The figure as inline SVG with ids prefixed, so two charts in one page never share an id."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.05)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)  # RDF block: nothing a viewer needs
    text = re.sub(r'\bid="', f'id="{prefix}-', text)
    text = re.sub(r"url\(#", f"url(#{prefix}-", text)
    text = re.sub(r'href="#', f'href="#{prefix}-', text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{prefix} chart" ', 1)


def write_figures(board: Board, out: Path) -> dict[str, str]:
    """PNG and PDF of each figure into ``out``; returns the inline SVG of each."""
    import matplotlib

    svgs = {}
    for name, make in (("radar", radar_figure), ("scatter", scatter_figure)):
        with matplotlib.rc_context(_RC):
            fig = make(board)
            for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "ModDate": None})):
                buf = io.BytesIO()
                fig.savefig(buf, format=ext, dpi=200, metadata=meta, bbox_inches="tight", pad_inches=0.05)
                atomic_write_bytes(out / f"{name}.{ext}", buf.getvalue())
        svgs[name] = _svg(fig, name)
    return svgs


# --------------------------------------------------------------------------- page
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;
max-width:1200px;padding:0 16px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}.meta{color:#666;margin:0}
.wrap{overflow-x:auto}table{border-collapse:collapse;font-variant-numeric:tabular-nums;white-space:nowrap}
th,td{padding:4px 8px;text-align:right;border-bottom:1px solid #e4e4e4}th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid #333;cursor:pointer;user-select:none;vertical-align:bottom}
thead tr.fam th{border-bottom:1px solid #999;cursor:default;text-align:center;font-weight:600}
thead th small{display:block;font-weight:400;color:#555}
th[aria-sort=descending] small::after{content:" ▼"}th[aria-sort=ascending] small::after{content:" ▲"}
td.best{font-weight:700}td.second{text-decoration:underline}td.missing{color:#aaa}td.mean{background:#f6f7f9}
tbody tr:hover{background:#fffbe6}.note{color:#555;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:24px}figure{margin:0;flex:1 1 480px}
figure svg{max-width:100%;height:auto}figcaption{color:#555;font-size:12px}
"""

_JS = """
(function(){
  var table=document.getElementById('leaderboard');
  var heads=table.tHead.rows[table.tHead.rows.length-1].cells;
  function val(row,i){var v=row.cells[i].getAttribute('data-v');return v;}
  function sortBy(i,dir){
    var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows),th=heads[i];
    var num=th.getAttribute('data-type')==='num';
    rows.sort(function(a,b){
      var x=val(a,i),y=val(b,i);
      if(x===''&&y==='')return 0; if(x==='')return 1; if(y==='')return -1;  // missing always last
      var c=num?(parseFloat(x)-parseFloat(y)):x.localeCompare(y);
      return dir==='asc'?c:-c;
    });
    rows.forEach(function(r){body.appendChild(r);});
    for(var k=0;k<heads.length;k++)heads[k].removeAttribute('aria-sort');
    th.setAttribute('aria-sort',dir==='asc'?'ascending':'descending');
    table.setAttribute('data-sorted',th.getAttribute('data-key')+':'+dir);
  }
  function first(th){return th.getAttribute('data-better')||'asc';}
  Array.prototype.forEach.call(heads,function(th,i){
    th.addEventListener('click',function(){
      var cur=th.getAttribute('aria-sort'),dir;
      if(cur==='descending')dir='asc';else if(cur==='ascending')dir='desc';else dir=first(th);
      sortBy(i,dir);
      if(history.replaceState)history.replaceState(null,'','#sort='+th.getAttribute('data-key')+':'+dir);
    });
  });
  var m=/sort=([^:&]+)(?::(asc|desc))?/.exec(decodeURIComponent(location.hash));
  if(m){for(var i=0;i<heads.length;i++){if(heads[i].getAttribute('data-key')===m[1]){
    sortBy(i,m[2]||first(heads[i]));}}}
})();
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _table_html(board: Board, cols: list[Column]) -> str:
    """The leaderboard table; ``cols`` are the paper table's columns, so marks and stars agree with it."""
    keys = [c.card if not c.is_mean else (f"mean_{c.family}" if c.family else "mean") for c in cols]
    fam_row = ['<th colspan="3"></th>']
    for fam, a, b in family_runs(cols):
        fam_row.append(f'<th colspan="{b - a + 1}">{_e(FAMILY_LABELS.get(fam, fam))}</th>')
    head = ['<th data-key="backbone" data-type="text" data-better="asc">Backbone<small>spec</small></th>',
            '<th data-key="params" data-type="num" data-better="asc">Params<small>M</small></th>',
            '<th data-key="gflops" data-type="num" data-better="asc">FLOPs<small>G</small></th>']
    for key, c in zip(keys, cols, strict=True):
        if c.is_mean:
            label = f"{_e(FAMILY_LABELS.get(c.family, c.family))}<small>mean</small>" if c.family else \
                "Mean<small>all families</small>"
        else:
            label = f"{_e(_label(c.card))}<small>{_e(_metric(board, c.card))}</small>"
        better = "desc" if c.higher else "asc"
        head.append(f'<th data-key="{_e(key)}" data-type="num" data-better="{better}">{label}</th>')
    rows = board.backbones
    ranks = [rank_cells([c.values[b] for b in rows], c.higher, [b in c.starred for b in rows]) for c in cols]
    body = []
    for r, b in enumerate(rows):
        p, g = board.params.get(b), board.gflops.get(b)
        cells = [f'<td data-v="{_e(b)}">{_e(b)}</td>',
                 f'<td data-v="{p / 1e6 if p is not None else ""}">{f"{p / 1e6:.1f}" if p is not None else "—"}</td>',
                 f'<td data-v="{g if g is not None else ""}">{significant(g)}</td>']
        for k, c in enumerate(cols):
            v = c.values[b]
            cls = ["mean"] if c.is_mean else []
            if math.isnan(v):
                cells.append(f'<td class="{" ".join(cls + ["missing"])}" data-v="">—</td>')
                continue
            cls += {1: ["best"], 2: ["second"]}.get(ranks[k][r], [])
            star = "*" if b in c.starred else ""
            cells.append(f'<td class="{" ".join(cls)}" data-v="{v!r}">{100 * v:.1f}{star}</td>')
        body.append(f'<tr data-backbone="{_e(b)}">' + "".join(cells) + "</tr>")
    return (f'<table id="leaderboard"><thead><tr class="fam">{"".join(fam_row)}</tr><tr>{"".join(head)}</tr></thead>'
            f'<tbody>\n{chr(10).join(body)}\n</tbody></table>')


def render_html(board: Board, cols: list[Column], svgs: dict[str, str], source: str = "") -> str:
    suite = board.suite or "all records"
    stamp = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    note = ("Values in % (primary metric of each card). Best per column in bold, second underlined. "
            "Family means are over a family's cards (shown for families with several cards), the overall mean over "
            "families; ↓ metrics (lower is better) enter means as 100 − x. "
            "* = mean over an incomplete row (missing cards are not counted). Click a header to sort.")
    several = {b: board.seeds[b] for b in board.backbones if len(board.seeds.get(b, [])) > 1}
    if several:
        note += " Rows with several fine-tuning seeds show the mean over seeds (" + "; ".join(
            f"{b}: seeds {', '.join(map(str, s))}" for b, s in several.items()) + ")."
    if board.hidden:
        note += " Not shown: " + "; ".join(f"{n} record(s) {r}" + (f" ({d})" if d else "") for r, n, d in board.hidden) + "."
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hcbench — {_e(suite)}</title>
<style>{_CSS}</style></head>
<body>
<header><h1>hcbench leaderboard — {_e(suite)}</h1>
<p class="meta">tier {_e(board.tier)} · {_count(len(board.backbones), "backbone")} · {_count(len(board.cards), "card")} ·
generated {stamp} by hcbench {_e(__version__)}{f" from {_e(source)}" if source else ""}</p></header>
<section id="leaderboard-section"><h2>Leaderboard</h2>
<div class="wrap">{_table_html(board, cols)}</div>
<p class="note">{_e(note)}</p></section>
<section id="charts-section"><h2>Charts</h2><div class="charts">
<figure id="radar">{svgs["radar"]}<figcaption>Primary metric per card, one polygon per backbone; each spoke
is min–max normalised over the backbones shown (inner ring: worst, rim: best; values in %).</figcaption></figure>
<figure id="scatter">{svgs["scatter"]}<figcaption>Parameters versus mean score over families.</figcaption></figure>
</div></section>
<script>{_JS}</script>
</body></html>
"""


def write_report(results_dir: str | Path, suite: str | None = None, out: str | Path = "report") -> Path:
    """Write ``out/index.html`` and ``out/{radar,scatter}.{png,pdf}``; returns the HTML path."""
    results_dir, out = Path(results_dir), Path(out)
    if not results_dir.exists():
        raise FileNotFoundError(f"results folder {results_dir} does not exist")
    board = leaderboard_frame(results_dir, suite=suite)
    if not board.backbones:
        raise ValueError(f"no result records under {results_dir}" + (f" for suite {suite!r}" if suite else ""))
    out.mkdir(parents=True, exist_ok=True)
    svgs = write_figures(board, out)
    page = out / "index.html"
    cols = build_columns(results_dir, board, board.backbones, "primary")
    atomic_write_text(page, render_html(board, cols, svgs, source=str(results_dir)))
    return page
