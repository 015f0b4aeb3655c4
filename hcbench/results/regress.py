"""CI regression checks (``hcbench regress``): compare a current result tree against a baseline.

Records pair up when they share everything in the run identity except the checkpoint:
backbone spec, card name, tier and seed, and the card's sha256 must then be equal (a pair
whose card changed is *not comparable* and is reported as such, never silently compared).
A metric regresses when it worsens by more than ``tolerance`` points (percent), in the
metric's own direction: AP falling is worse, MR⁻² rising is worse.

Exit codes: 0 nothing regressed, 1 a regression, 2 unusable input (missing folder, malformed
record, no comparable pair, a card sha256 mismatch).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hcbench.cards import higher_is_better
from hcbench.errors import UserError
from hcbench.io import atomic_write_bytes, atomic_write_text
from hcbench.results.schema import ResultRecord
from hcbench.results.store import RecordError, load_records

EPS = 1e-9  # points; keeps a change of exactly the tolerance from failing on float noise
Key = tuple[str, str, str, int]  # (backbone spec, card, tier, seed)


class RegressInputError(UserError, ValueError):
    """Input that cannot be compared at all (exit code 2)."""


@dataclass
class Delta:
    backbone: str
    card: str
    tier: str
    seed: int
    metric: str
    higher: bool
    baseline: float | None
    current: float | None
    status: str  # improved | within | regressed | missing | failed
    note: str = ""

    @property
    def points(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return 100.0 * (self.current - self.baseline)

    @property
    def failed(self) -> bool:
        return self.status in ("regressed", "missing", "failed")


@dataclass
class Comparison:
    baseline: Path
    current: Path
    tolerance: float
    metrics: str
    deltas: list[Delta] = field(default_factory=list)
    not_comparable: list[str] = field(default_factory=list)  # problems that make the input unusable
    notes: list[str] = field(default_factory=list)  # unpaired records and other things worth knowing

    @property
    def regressions(self) -> list[Delta]:
        return [d for d in self.deltas if d.failed]

    @property
    def exit_code(self) -> int:
        if self.not_comparable or not self.deltas:
            return 2
        return 1 if self.regressions else 0


def _index(root: Path, side: str) -> tuple[dict[Key, ResultRecord], dict[Key, Path], list[str]]:
    if not root.is_dir():
        raise RegressInputError(f"{side} folder {root} does not exist")
    try:
        pairs = load_records(root)
    except RecordError as e:
        raise RegressInputError(f"{side}: {e}") from e
    recs: dict[Key, ResultRecord] = {}
    paths: dict[Key, Path] = {}
    problems: list[str] = []
    for path, rec in pairs:
        key = (rec.backbone.spec, rec.card.name, rec.card.tier, rec.run.seed)
        if key in recs and (recs[key].metrics != rec.metrics or recs[key].card.sha256 != rec.card.sha256):
            problems.append(f"{side}: {paths[key]} and {path} have the same identity {_label(key)} "
                            "but different results; keep one")
            continue
        recs.setdefault(key, rec)
        paths.setdefault(key, path)
    return recs, paths, problems


def _label(key: Key) -> str:
    backbone, card, tier, seed = key
    return f"{backbone} / {card} ({tier}, seed {seed})"


def _judge(higher: bool, base: float, cur: float, tolerance: float) -> str:
    worse = 100.0 * ((base - cur) if higher else (cur - base))
    if worse > tolerance + EPS:
        return "regressed"
    if -worse > tolerance + EPS:
        return "improved"
    return "within"


def compare(baseline: str | Path, current: str | Path, tolerance: float = 0.5, metrics: str = "primary") -> Comparison:
    """Pair the records of two trees and judge every (pair, metric). Raises on unusable folders/records."""
    if metrics not in ("primary", "all"):
        raise RegressInputError(f"--metrics must be 'primary' or 'all', not {metrics!r}")
    if not math.isfinite(tolerance) or tolerance < 0:
        raise RegressInputError(f"--tolerance must be a non-negative number of points, not {tolerance}")
    baseline, current = Path(baseline), Path(current)
    base, base_paths, p1 = _index(baseline, "baseline")
    cur, cur_paths, p2 = _index(current, "current")
    out = Comparison(baseline, current, tolerance, metrics, not_comparable=p1 + p2)
    for key in sorted(base.keys() & cur.keys()):
        b, c = base[key], cur[key]
        backbone, card, tier, seed = key
        if b.card.sha256 != c.card.sha256:
            out.not_comparable.append(
                f"{_label(key)}: not comparable, the card changed (baseline sha256 {b.card.sha256[:12]}… "
                f"version {b.card.version}, current {c.card.sha256[:12]}… version {c.card.version}): "
                f"{base_paths[key]} vs {cur_paths[key]}")
            continue
        if b.status != "ok":
            out.notes.append(f"{_label(key)}: the baseline run failed, nothing to compare against")
            continue
        names = [b.primary] if metrics == "primary" else list(b.metrics)
        for m in names:
            hib = higher_is_better(m)
            if b.metrics.get(m) is None:  # undefined on this split (COCO's -1): nothing to compare
                continue
            if c.status != "ok":
                out.deltas.append(Delta(backbone, card, tier, seed, m, hib, b.metrics[m], None, "failed",
                                        f"current run failed: {c.error}"))
            elif c.metrics.get(m) is None:
                out.deltas.append(Delta(backbone, card, tier, seed, m, hib, b.metrics[m], None, "missing",
                                        "metric missing from the current record"))
            else:
                status = _judge(hib, b.metrics[m], c.metrics[m], tolerance)
                out.deltas.append(Delta(backbone, card, tier, seed, m, hib, b.metrics[m], c.metrics[m], status))
    for key in sorted(base.keys() - cur.keys()):
        out.notes.append(f"{_label(key)}: only in the baseline (not run in current)")
    for key in sorted(cur.keys() - base.keys()):
        out.notes.append(f"{_label(key)}: only in current (no baseline)")
    if not out.deltas and not out.not_comparable:
        out.not_comparable.append(f"no comparable record pairs between {baseline} and {current} "
                                  "(same backbone spec, card, tier and seed)")
    return out


# --------------------------------------------------------------------------- reports
def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _pts(d: Delta) -> str:
    p = d.points
    return "–" if p is None else f"{p:+.2f}"


def _metric_name(d: Delta) -> str:
    return d.metric + ("" if d.higher else " ↓")


def format_table(cmp: Comparison) -> str:
    header = ["backbone", "card", "tier", "seed", "metric", "baseline", "current", "Δ pts", "status"]
    rows = [[d.backbone, d.card, d.tier, str(d.seed), _metric_name(d), _pct(d.baseline), _pct(d.current), _pts(d),
             d.status.upper() if d.failed else d.status] for d in cmp.deltas]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    right = {3, 5, 6, 7}

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)] if rows else []
    lines += [f"NOT COMPARABLE {p}" for p in cmp.not_comparable]
    lines += [f"note: {n}" for n in cmp.notes]
    lines.append(summary_line(cmp))
    return "\n".join(lines)


def summary_line(cmp: Comparison) -> str:
    n_reg, n_imp = len(cmp.regressions), sum(d.status == "improved" for d in cmp.deltas)
    verdict = {0: "PASS", 1: "FAIL", 2: "UNUSABLE INPUT"}[cmp.exit_code]
    return (f"{verdict}: {len(cmp.deltas)} metric(s) compared, {n_reg} regressed, {n_imp} improved, "
            f"{len(cmp.not_comparable)} not comparable (tolerance {cmp.tolerance:g} points)")


def markdown_summary(cmp: Comparison) -> str:
    mark = {"regressed": "❌ regressed", "missing": "❌ missing", "failed": "❌ run failed",
            "improved": "⬆️ improved", "within": "✅ within"}
    lines = [f"## hcbench regress — {summary_line(cmp)}", "",
             f"Baseline `{cmp.baseline}` vs current `{cmp.current}`; metrics: {cmp.metrics}; "
             "Δ in points (percent); ↓ = lower is better.", ""]
    if cmp.deltas:
        lines += ["| backbone | card | tier | seed | metric | baseline | current | Δ pts | status |",
                  "|:---|:---|:---|---:|:---|---:|---:|---:|:---|"]
        for d in sorted(cmp.deltas, key=lambda d: (not d.failed, d.backbone, d.card, d.metric)):
            lines.append(f"| {d.backbone} | {d.card} | {d.tier} | {d.seed} | {_metric_name(d)} | {_pct(d.baseline)} "
                         f"| {_pct(d.current)} | {_pts(d)} | {mark[d.status]}{f' ({d.note})' if d.note else ''} |")
    if cmp.not_comparable:
        lines += ["", "### Not comparable (unusable input)", *[f"- {p}" for p in cmp.not_comparable]]
    if cmp.notes:
        lines += ["", "### Notes", *[f"- {n}" for n in cmp.notes]]
    return "\n".join(lines) + "\n"


def junit_xml(cmp: Comparison) -> bytes:
    """One testcase per (pair, metric); a failure on regression, an error on a non-comparable input."""
    n_fail, n_err = len(cmp.regressions), len(cmp.not_comparable)
    n = len(cmp.deltas) + n_err
    stamp = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    top = ET.Element("testsuites", name="hcbench regress", tests=str(n), failures=str(n_fail), errors=str(n_err))
    suite = ET.SubElement(top, "testsuite", name="hcbench.regress", tests=str(n), failures=str(n_fail),
                          errors=str(n_err), skipped="0", time="0", timestamp=stamp)
    props = ET.SubElement(suite, "properties")
    for k, v in (("baseline", cmp.baseline), ("current", cmp.current), ("tolerance_points", cmp.tolerance),
                 ("metrics", cmp.metrics)):
        ET.SubElement(props, "property", name=k, value=str(v))
    for d in cmp.deltas:
        case = ET.SubElement(suite, "testcase", classname=f"hcbench.regress.{d.backbone}.{d.card}",
                             name=f"{d.card}/{d.metric} [{d.tier}, seed {d.seed}]", time="0")
        text = (f"{d.backbone} {d.card} {_metric_name(d)}: baseline {_pct(d.baseline)}, current {_pct(d.current)}, "
                f"delta {_pts(d)} points, tolerance {cmp.tolerance:g}" + (f"; {d.note}" if d.note else ""))
        if d.failed:
            ET.SubElement(case, "failure", message=f"{d.status}: {text}", type=d.status).text = text
        else:
            ET.SubElement(case, "system-out").text = f"{d.status}: {text}"
    for i, p in enumerate(cmp.not_comparable):
        case = ET.SubElement(suite, "testcase", classname="hcbench.regress.input", name=f"comparable[{i}]", time="0")
        ET.SubElement(case, "error", message=p, type="not-comparable").text = p
    ET.indent(top)
    return ET.tostring(top, encoding="utf-8", xml_declaration=True) + b"\n"


def _unusable(baseline: Path, current: Path, tolerance: float, metrics: str, problem: str) -> Comparison:
    return Comparison(Path(baseline), Path(current), tolerance, metrics, not_comparable=[problem])


def regress(baseline: str | Path, current: str | Path, tolerance: float = 0.5, metrics: str = "primary", *,
            junit: str | Path | None = None, markdown: str | Path | None = None) -> Comparison:
    """:func:`compare`, with unusable input turned into a :class:`Comparison` that says why (exit
    code 2), and the JUnit/Markdown reports written when asked. CI gets a report either way."""
    try:
        cmp = compare(baseline, current, tolerance, metrics)
    except RegressInputError as e:
        cmp = _unusable(baseline, current, tolerance, metrics, str(e))
    if junit:
        atomic_write_bytes(junit, junit_xml(cmp))
    if markdown:
        atomic_write_text(markdown, markdown_summary(cmp))
    return cmp
