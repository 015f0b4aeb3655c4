"""The leaderboard: a pure function of a set of result records.

One row per backbone *identity* (spec and checkpoint sha256), one column per card's primary
metric, a mean per family with several cards and an overall mean over families. What a row
aggregates is said, never implied:

- records of one card that differ only by seed are averaged and shown as ``mean±std`` (sample
  standard deviation) with the row's seeds in the ``seeds`` column; a cell with fewer seeds than
  its row says ``n=…``;
- the same run (card, seed) found twice for one backbone (e.g. a user's run and a committed one
  under another folder) is never averaged: the backbone gets one row per results folder,
  labelled ``spec [folder]``; two checkpoints under one spec get one row each (``spec @sha``);
- every record not shown (another tier, outside ``--suite``, failed, an older card version of a
  cell that has a current one, an exact duplicate) is counted in :attr:`Board.hidden` and in the
  footnote.

A missing result is shown as missing; it is never averaged as zero nor skipped silently: a mean
over an incomplete row is computed over what exists and *marked* incomplete. Lower-is-better
metrics (MR⁻²) enter means as ``1 - x`` so every mean is higher-is-better.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hcbench.cards import CardError, get_card, get_suite, higher_is_better, resolve
from hcbench.codeprint import card_code
from hcbench.errors import UserError
from hcbench.results.schema import ResultRecord
from hcbench.results.store import iter_record_files, load_records

INCOMPLETE_MARK = "*"


@dataclass
class Board:
    cards: list[str]
    families: dict[str, str]
    primary: dict[str, str]
    higher: dict[str, bool]
    values: pd.DataFrame  # row x card, primary-metric fractions (mean over seeds), NaN = missing
    family_means: pd.DataFrame  # row x family
    overall: pd.Series
    complete: pd.Series  # row -> every card present
    params: dict[str, int] = field(default_factory=dict)
    gflops: dict[str, float | None] = field(default_factory=dict)
    records: dict[tuple[str, str], ResultRecord] = field(default_factory=dict)  # (row, card) -> first record
    tier: str | None = None
    suite: str | None = None
    std: pd.DataFrame | None = None  # row x card, sample std over seeds (NaN with one seed)
    counts: pd.DataFrame | None = None  # row x card, number of seeds averaged (0 = missing)
    overall_std: pd.Series | None = None  # std over seeds of the per-seed overall mean (NaN if not defined)
    seeds: dict[str, list[int]] = field(default_factory=dict)  # row -> seeds of its records
    cell_records: dict[tuple[str, str], list[ResultRecord]] = field(default_factory=dict)
    identity: dict[str, dict] = field(default_factory=dict)  # row -> spec, checkpoint_sha256, folder
    hidden: list[tuple[str, int, str]] = field(default_factory=list)  # (reason, count, detail)
    # shown records made by other code than this checkout's (their run.code differs; see hcbench.codeprint)
    other_code: int = 0

    @property
    def backbones(self) -> list[str]:
        """Row labels (a backbone spec, disambiguated when one spec has several rows)."""
        return list(self.values.index)

    def family_complete(self, backbone: str, family: str) -> bool:
        cols = [c for c in self.cards if self.families[c] == family]
        return bool(cols) and not self.values.loc[backbone, cols].isna().any()

    def family_cards(self, family: str) -> list[str]:
        return [c for c in self.cards if self.families[c] == family]

    @property
    def multi_card_families(self) -> list[str]:
        """Families whose mean says something a card column does not (one-card means repeat the card)."""
        return [f for f in self.family_means.columns if len(self.family_cards(f)) > 1]

    @property
    def hidden_total(self) -> int:
        return sum(n for _, n, _ in self.hidden)


def _card_order(cards: set[str], families: dict[str, str], suite: str | None) -> list[str]:
    if suite:
        try:
            listed = [c for c in get_suite(suite).cards if c in cards]
            return listed + sorted(cards - set(listed))
        except CardError:
            pass
    fam_rank = {f: i for i, f in enumerate(family_order(set(families.values())))}
    return sorted(cards, key=lambda c: (fam_rank.get(families.get(c, ""), len(fam_rank)), c))


def family_order(seen: set[str]) -> list[str]:
    """The families in ``seen`` in table order: registered ones by ``Family.order``, then any
    family a record names that this hcbench does not know (a plugin not loaded), by name."""
    from hcbench.families.base import family_names

    known = [f for f in family_names() if f in seen]
    return known + sorted(seen - set(known))


# --------------------------------------------------------------------------- grouping
@dataclass
class _Rec:
    path: Path
    folder: str  # the record's results folder (its suite folder) relative to the results root
    rec: ResultRecord


def _current_sha(name: str, tier: str, cache: dict) -> str | None:
    """The sha256 the card has now at ``tier``; None for a card this hcbench does not know."""
    if (name, tier) not in cache:
        try:
            cache[(name, tier)] = resolve(get_card(name), tier).sha256
        except (CardError, ValueError, KeyError, OSError):
            cache[(name, tier)] = None
    return cache[(name, tier)]


def _has_duplicates(recs: list[_Rec]) -> bool:
    seen = Counter((r.rec.card.name, r.rec.run.seed) for r in recs)
    return any(n > 1 for n in seen.values())


def _split_rows(spec: str, sha: str | None, recs: list[_Rec]) -> list[tuple[str | None, list[_Rec]]]:
    """Rows of one backbone identity: one if no (card, seed) repeats, else one per results folder
    (first by the top folder under the root, then by the full folder)."""
    if not _has_duplicates(recs):
        return [(None, recs)]
    by_top: dict[str, list[_Rec]] = {}
    for r in recs:
        by_top.setdefault(r.folder.split("/")[0], []).append(r)
    out: list[tuple[str | None, list[_Rec]]] = []
    for top, group in sorted(by_top.items()):
        if not _has_duplicates(group):
            out.append((top, group))
            continue
        by_folder: dict[str, list[_Rec]] = {}
        for r in group:
            by_folder.setdefault(r.folder, []).append(r)
        out += sorted(by_folder.items())
    return out


def _drop_repeats(recs: list[_Rec]) -> tuple[list[_Rec], int]:
    """Within one row a (card, seed) is shown once (the first by path); the others are counted."""
    seen: set[tuple[str, int]] = set()
    out = []
    for r in sorted(recs, key=lambda r: str(r.path)):
        key = (r.rec.card.name, r.rec.run.seed)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out, len(recs) - len(out)



class PartialLoadError(UserError):
    """``--strict``: a record was fine-tuned from a backbone that loaded with tensors missing."""


def partial_loads(pairs: list[tuple[Path, ResultRecord]]) -> list[str]:
    """One line per successful record whose backbone load (``backbone.load``, written by
    ``hcbench run`` for checkpoint backbones) left backbone tensors missing, naming the record."""
    out = []
    for path, rec in pairs:
        load = getattr(rec.backbone, "load", None)
        missing = load.get("missing") if isinstance(load, dict) else None
        if rec.status == "ok" and missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            out.append(f"{path}: {rec.backbone.spec} loaded with {len(missing)} backbone tensor(s) missing ({shown})")
    return out


def leaderboard_frame(results: str | Path, suite: str | None = None, tier: str | None = None, *,
                      strict: bool = False) -> Board:
    """Aggregate the records under ``results`` (optionally ``results/<suite>``) into a Board.

    Only one tier is ever shown: ``tier`` if given, else the tier most records have. Failed
    records count as missing. Seeds are averaged (with their std); see the module docstring for
    what makes two rows, and :attr:`Board.hidden` for what is not shown. ``strict``: raise
    :class:`PartialLoadError` if any record's backbone loaded with tensors missing.
    """
    root = Path(results)
    pairs = load_records(root, suite)
    if strict and (bad := partial_loads(pairs)):
        raise PartialLoadError("--strict: refusing records whose backbone checkpoint loaded partially "
                               "(a sidecar 'strict: false'):\n  " + "\n  ".join(bad))
    hidden: list[tuple[str, int, str]] = []
    if suite:
        loaded = {p for p, _ in pairs}
        outside = Counter(str(p.parent.parent.relative_to(root)) if p.is_relative_to(root) else str(p.parent)
                          for p in iter_record_files(root) if p not in loaded) if root.is_dir() else Counter()
        if outside:
            hidden.append((f"outside suite {suite}", sum(outside.values()),
                           ", ".join(f"{k}/: {n}" for k, n in sorted(outside.items()))))

    def folder(p: Path) -> str:
        try:
            return p.parent.parent.relative_to(root).as_posix()
        except ValueError:
            return p.parent.parent.as_posix()

    failed = [(p, r) for p, r in pairs if r.status != "ok"]
    recs = [_Rec(p, folder(p), r) for p, r in pairs if r.status == "ok"]
    if tier is None and recs:
        tier = Counter(r.rec.card.tier for r in recs).most_common(1)[0][0]
    other_tier = Counter(r.rec.card.tier for r in recs if r.rec.card.tier != tier)
    if other_tier:
        hidden.append(("of another tier", sum(other_tier.values()),
                       ", ".join(f"{t}: {n} (--tier {t})" for t, n in sorted(other_tier.items()))))
    recs = [r for r in recs if r.rec.card.tier == tier]
    failed_here = [(p, r) for p, r in failed if r.card.tier == tier or tier is None]
    if failed:
        hidden.append(("failed runs (shown as —)" if failed_here else "failed runs", len(failed),
                       ", ".join(sorted({f"{r.backbone.spec}/{r.card.name}" for _, r in failed}))))

    # one card version per cell: the card as it is now when a record of it exists, else the most common
    cache: dict = {}
    by_cell: dict[tuple[str, str], list[_Rec]] = {}
    for r in recs:
        by_cell.setdefault((r.rec.backbone.spec, r.rec.card.name), []).append(r)
    stale_hidden = 0
    kept: list[_Rec] = []
    for (_, card), rs in sorted(by_cell.items()):
        current = _current_sha(card, tier, cache) if tier else None
        shas = Counter(r.rec.card.sha256 for r in rs)
        use = current if current in shas else shas.most_common(1)[0][0]
        stale_hidden += sum(n for s, n in shas.items() if s != use)
        kept += sorted((r for r in rs if r.rec.card.sha256 == use), key=lambda r: str(r.path))
    if stale_hidden:
        hidden.append(("made with another version of their card than the cell's shown records", stale_hidden,
                       ""))
    other_code = sum(1 for r in kept if r.rec.run.code is None or r.rec.run.code != card_code(r.rec.card.name))

    # rows: backbone identity (spec, checkpoint), split by folder when a run repeats
    by_identity: dict[tuple[str, str | None], list[_Rec]] = {}
    for r in kept:
        by_identity.setdefault((r.rec.backbone.spec, r.rec.backbone.checkpoint_sha256), []).append(r)
    shas_per_spec = Counter(spec for spec, _ in by_identity)
    rows: dict[str, list[_Rec]] = {}
    identity: dict[str, dict] = {}
    repeats = 0
    for (spec, sha), rs in sorted(by_identity.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        label = spec if shas_per_spec[spec] == 1 else f"{spec} @{(sha or 'none')[:8]}"
        for where, group in _split_rows(spec, sha, rs):
            name = label if where is None else f"{label} [{where}]"
            rows[name], n = _drop_repeats(group)
            repeats += n
            identity[name] = {"spec": spec, "checkpoint_sha256": sha, "folder": where}

    if repeats:
        hidden.append(("repeating a (card, seed) of their row in the same folder", repeats, ""))
    families: dict[str, str] = {}
    primary: dict[str, str] = {}
    for r in kept:
        families[r.rec.card.name] = r.rec.card.family
        primary[r.rec.card.name] = r.rec.primary
    cards_seen = set(families)
    if suite:
        try:  # cards of the suite without any record still get a (missing) column
            for name in get_suite(suite).available:  # a missing card (incomplete suite) has no column
                if name not in families:
                    card = get_card(name)
                    families[name], primary[name] = card.family, card.eval.primary
            cards_seen |= set(get_suite(suite).available)
        except CardError:
            pass
    cards = _card_order(cards_seen, families, suite)
    higher = {c: higher_is_better(primary[c], families[c]) for c in cards}
    fams = family_order({families[c] for c in cards})

    index = pd.Index(list(rows), name="backbone")
    values = pd.DataFrame(index=index, columns=cards, dtype=float)
    std = pd.DataFrame(index=index, columns=cards, dtype=float)
    counts = pd.DataFrame(0, index=index, columns=cards, dtype=int)
    params: dict[str, int] = {}
    gflops: dict[str, float | None] = {}
    chosen: dict[tuple[str, str], ResultRecord] = {}
    cell_records: dict[tuple[str, str], list[ResultRecord]] = {}
    seeds: dict[str, list[int]] = {}
    per_seed: dict[str, dict[int, dict[str, float]]] = {}
    for name, group in rows.items():
        group = sorted(group, key=lambda r: (r.rec.card.name, r.rec.run.seed, str(r.path)))
        seeds[name] = sorted({r.rec.run.seed for r in group})
        for r in group:
            c = r.rec.card.name
            cell_records.setdefault((name, c), []).append(r.rec)
            chosen.setdefault((name, c), r.rec)
            params.setdefault(name, r.rec.backbone.params)
            if r.rec.backbone.gflops is not None:
                gflops.setdefault(name, r.rec.backbone.gflops)
            v = r.rec.metrics[r.rec.primary]
            per_seed.setdefault(name, {}).setdefault(r.rec.run.seed, {})[c] = (v if higher[c] else 1.0 - v)
        for c in cards:
            vs = [rec.metrics[rec.primary] for rec in cell_records.get((name, c), [])]
            if vs:
                values.loc[name, c] = sum(vs) / len(vs)
                std.loc[name, c] = statistics.stdev(vs) if len(vs) > 1 else math.nan
                counts.loc[name, c] = len(vs)

    oriented = values.copy()
    for c in cards:
        if not higher[c]:
            oriented[c] = 1.0 - oriented[c]
    family_means = pd.DataFrame(
        {f: oriented[[c for c in cards if families[c] == f]].mean(axis=1, skipna=True) for f in fams},
        index=values.index,
    )
    overall = family_means.mean(axis=1, skipna=True) if fams else pd.Series(math.nan, index=values.index)

    def seed_overall(by_card: dict[str, float]) -> float:
        fam_vals = [statistics.fmean(by_card[c] for c in cards if families[c] == f and c in by_card)
                    for f in fams if any(families[c] == f and c in by_card for c in cards)]
        return statistics.fmean(fam_vals)

    overall_std = pd.Series(math.nan, index=values.index, dtype=float)
    for name in rows:
        present = {c for c in cards if counts.loc[name, c] > 0}
        full = [s for s, by_card in per_seed.get(name, {}).items() if set(by_card) == present]
        if len(full) >= 2 and len(full) == len(seeds[name]):  # the std is over the seeds the mean is over
            overall_std.loc[name] = statistics.stdev(seed_overall(per_seed[name][s]) for s in full)

    complete = ~values.isna().any(axis=1)
    order = sorted(values.index, key=lambda b: (-overall.loc[b] if not math.isnan(overall.loc[b]) else math.inf, b))
    return Board(cards, families, primary, higher, values.loc[order], family_means.loc[order],
                 overall.loc[order], complete.loc[order], params, gflops, chosen, tier, suite,
                 std=std.loc[order], counts=counts.loc[order], overall_std=overall_std.loc[order], seeds=seeds,
                 cell_records=cell_records, identity=identity, hidden=hidden, other_code=other_code)
