"""``hcbench report``: a self-contained page (table + radar + scatter), PNG/PDF figures, and the page
as headless Chromium renders it (sorting by URL and by clicks, a non-blank screenshot)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import results_fixtures as fx  # noqa: E402

from hcbench.cli import main as cli_main  # noqa: E402
from hcbench.results.report import write_report  # noqa: E402

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
BACKBONES = list(fx.VALUES)
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"]  # the report's first four series colours


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The fixture tree's report, written once through the command line (``hcbench report``)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HCBENCH_TASKS", str(fx.TASKS))
    try:
        out = tmp_path_factory.mktemp("report")
        assert cli_main(["report", "--results", str(fx.TREE), "--suite", fx.SUITE, "--out", str(out)]) == 0
        return out
    finally:
        mp.undo()


class _Table(HTMLParser):
    """Rows of #leaderboard as {backbone: [(classes, data-v, text), ...]} plus header keys."""

    def __init__(self):
        super().__init__()
        self.keys, self.rows, self._in, self._cell, self._row = [], {}, False, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "leaderboard":
            self._in = True
        if not self._in:
            return
        if tag == "th" and "data-key" in a:
            self.keys.append(a["data-key"])
        elif tag == "tr" and "data-backbone" in a:
            self._row = self.rows.setdefault(a["data-backbone"], [])
        elif tag == "td":
            self._cell = [a.get("class") or "", a.get("data-v"), ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[2] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(tuple(self._cell))
            self._cell = None
        elif tag == "table":
            self._in = False


def _table(page: str) -> _Table:
    t = _Table()
    t.feed(page)
    return t


# --------------------------------------------------------------------------- files
def test_report_writes_page_and_paper_figures(report):
    assert sorted(p.name for p in report.iterdir()) == sorted(
        ["index.html", "radar.png", "radar.pdf", "scatter.png", "scatter.pdf"])
    for name in ("radar", "scatter"):
        with Image.open(report / f"{name}.png") as im:
            assert im.format == "PNG" and im.width >= 800 and im.height >= 700
            px = np.asarray(im.convert("RGB"))
        assert px.std() > 10  # not a blank canvas
        for c in COLORS:  # every backbone's series colour is drawn
            rgb = np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)])
            assert (np.abs(px.astype(int) - rgb).sum(axis=2) < 30).sum() > 20, (name, c)
        pdf = (report / f"{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")


def test_page_is_self_contained(report):
    page = (report / "index.html").read_text()
    no_ns = re.sub(r'xmlns(:\w+)?="[^"]*"', "", page)
    assert "http://" not in no_ns and "https://" not in no_ns  # nothing fetched at view time
    assert not re.search(r"<(link|img|iframe|object|embed)\b", page) and not re.search(r"<script[^>]*\bsrc=", page)
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "duplicate element ids between the two inline SVGs"
    for ref in set(re.findall(r"url\(#([^)]+)\)", page)) | set(re.findall(r'href="#([^"]+)"', page)):
        assert ref in ids, f"dangling reference #{ref}"


def test_table_values_and_marks(report):
    t = _table((report / "index.html").read_text())
    assert t.keys == ["backbone", "params", "gflops", "coco_pose", "mpii_pose", "mean_pose", "lip_parsing",
                      "crowdhuman_det", "citypersons_det", "mean_detection", "market_reid", "pa100k_attr", "mean"]
    assert list(t.rows) == ["student:dpal_tiny", "timm:resnet50", "vit_tiny", "vit_small"]
    col = {k: i for i, k in enumerate(t.keys)}
    for b, cells in t.rows.items():
        for card in ("mpii_pose", "lip_parsing", "crowdhuman_det", "citypersons_det", "market_reid", "pa100k_attr"):
            m = {"mpii_pose": "PCKh", "lip_parsing": "mIoU", "crowdhuman_det": "AP", "citypersons_det": "MR-2",
                 "market_reid": "mAP", "pa100k_attr": "mA"}[card]
            v = fx.VALUES[b].get(card, {}).get(m)
            cls, dv, text = cells[col[card]]
            assert text == ("—" if v is None else f"{100 * v:.1f}") and (dv == "" if v is None else float(dv) == v)
    def marks(card):
        return {b: t.rows[b][col[card]][0] for b in t.rows}
    # higher is better: COCO AP 74.1 (vit_small) best, 72.9 (dpal) second
    assert marks("coco_pose") == {"student:dpal_tiny": "second", "timm:resnet50": "", "vit_tiny": "",
                                  "vit_small": "best"}
    # lower is better: MR-2 10.4 (dpal) best, 10.9 (vit_small) second
    assert marks("citypersons_det") == {"student:dpal_tiny": "best", "timm:resnet50": "", "vit_tiny": "",
                                        "vit_small": "second"}
    assert t.rows["vit_small"][col["mean"]][2].endswith("*")  # incomplete row


def test_charts_have_one_series_per_backbone(report):
    page = (report / "index.html").read_text()
    radar = re.search(r'<figure id="radar">(.*?)</figure>', page, re.S).group(1)
    scatter = re.search(r'<figure id="scatter">(.*?)</figure>', page, re.S).group(1)
    for i in range(len(BACKBONES)):
        assert f'id="radar-bb-{i}"' in radar and f'id="scatter-bb-{i}"' in scatter
    # complete rows get a filled polygon, the incomplete one (vit_small, last) does not
    assert [f'id="radar-fill-{i}"' in radar for i in range(4)] == [True, True, True, False]
    for card in ("COCO", "MPII", "LIP", "CrowdHuman", "CityPersons", "Market", "PA-100K"):
        assert f">{card}" in radar  # one spoke label per card (text kept as text)


def test_write_report_returns_the_page_and_rejects_empty_input(report, tmp_path, monkeypatch):
    monkeypatch.setenv("HCBENCH_TASKS", str(fx.TASKS))
    assert (report / "index.html").read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError, match="no result records"):
        write_report(tmp_path, suite="mini", out=tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "nope", suite="mini", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- headless Chromium
def _chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([CHROMIUM, *flags, *extra, url], capture_output=True, text=True, timeout=120)


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get "
                                    "install chromium); the rendered-page test needs a browser")

CLICKS = """<script>(function(){
  var t=document.getElementById('leaderboard'),heads=t.tHead.rows[1].cells,out={};
  function th(k){for(var i=0;i<heads.length;i++)if(heads[i].getAttribute('data-key')===k)return heads[i];}
  function order(){return Array.prototype.map.call(t.tBodies[0].rows,function(r){return r.getAttribute('data-backbone');});}
  th('coco_pose').click();out.coco_first=order();th('coco_pose').click();out.coco_second=order();
  th('citypersons_det').click();out.mr2_first=order();th('backbone').click();out.name=order();
  th('params').click();out.params=order();
  th('mpii_pose').click();out.mpii_first=order();th('mpii_pose').click();out.mpii_second=order();
  var pre=document.createElement('pre');pre.id='clicks';pre.textContent=JSON.stringify(out);document.body.appendChild(pre);
})();</script></body>"""


@needs_chromium
def test_chromium_renders_table_and_both_charts(report, tmp_path):
    shot = tmp_path / "shot.png"
    url = (report / "index.html").as_uri() + "#sort=citypersons_det"
    proc = _chromium(tmp_path, url, "--dump-dom", f"--screenshot={shot}", "--window-size=1300,1400")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    t = _table(dom)
    assert len(t.rows) == 4 and len(t.keys) == 13
    # the URL pre-sorted by MR-2, lower first: 10.4, 10.9, 11.8, 13.1
    assert list(t.rows) == ["student:dpal_tiny", "vit_small", "vit_tiny", "timm:resnet50"]
    assert 'data-sorted="citypersons_det:asc"' in dom and 'aria-sort="ascending"' in dom
    for fig in ("radar", "scatter"):
        body = re.search(rf'<figure id="{fig}">(.*?)</figure>', dom, re.S).group(1)
        assert "<svg" in body and all(f'id="{fig}-bb-{i}"' in body for i in range(4))

    assert shot.is_file(), proc.stderr[-2000:]
    with Image.open(shot) as im:
        px = np.asarray(im.convert("RGB")).astype(int)
    assert px.shape[:2] == (1400, 1300)
    packed = (px[..., 0] << 16) | (px[..., 1] << 8) | px[..., 2]
    assert px.std() > 20 and len(np.unique(packed)) > 200  # not blank
    for c in COLORS:  # each backbone's chart colour is on screen: the SVG charts were painted
        rgb = np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(px - rgb).sum(axis=2) < 40).sum() > 30, c


@needs_chromium
def test_chromium_click_sorting(report, tmp_path):
    page = (report / "index.html").read_text().replace("</body>", CLICKS)
    (tmp_path / "clicks.html").write_text(page)
    proc = _chromium(tmp_path, (tmp_path / "clicks.html").as_uri(), "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(re.search(r'<pre id="clicks">(.*?)</pre>', proc.stdout, re.S).group(1).replace("&quot;", '"'))
    # first click sorts "better first" (AP: high to low), a second click reverses; missing values stay last
    assert got["coco_first"] == ["vit_small", "student:dpal_tiny", "timm:resnet50", "vit_tiny"]
    assert got["coco_second"] == ["vit_tiny", "timm:resnet50", "student:dpal_tiny", "vit_small"]
    assert got["mr2_first"] == ["student:dpal_tiny", "vit_small", "vit_tiny", "timm:resnet50"]
    assert got["name"] == ["student:dpal_tiny", "timm:resnet50", "vit_small", "vit_tiny"]
    assert got["params"] == ["student:dpal_tiny", "vit_tiny", "vit_small", "timm:resnet50"]  # stable on ties
    assert got["mpii_first"] == ["student:dpal_tiny", "vit_tiny", "timm:resnet50", "vit_small"]
    assert got["mpii_second"] == ["timm:resnet50", "vit_tiny", "student:dpal_tiny", "vit_small"]
