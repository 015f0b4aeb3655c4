"""Person re-identification readers and writers: Market-1501, MSMT17 (v1 lists), CUHK03-NP (.mat config).

Every reader returns ``ReIDSample(image, pid, camid, role)`` with the dataset's own pid (train pids
are relabelled by the adapter), a 0-based camera id and the role ``train``/``query``/``gallery``.
``limit`` caps each role separately, so a limited test split still has queries and a gallery.

Card file roles
- ``market1501``: ``train`` / ``query`` / ``gallery``: image folders (``bounding_box_train``, ``query``,
  ``bounding_box_test``). Names ``{pid}_c{cam}s{seq}_{frame}_{n}.jpg``; pid ``-1`` (junk) is dropped
  unless ``options.keep_junk`` (the field's counts, e.g. 15,913 gallery images, exclude it); pid
  ``0000`` (distractor) is kept.
- ``msmt17``: ``images`` (``train`` or ``test`` folder) and one or more lists ``train``, ``val``
  (both -> role train), ``query``, ``gallery`` (``list_*.txt``, lines ``relpath pid``). The camera is
  the 3rd ``_`` field of the file name (1-based).
- ``cuhk03_np``: ``config`` (``cuhk03_new_protocol_config_{labeled,detected}.mat`` with ``filelist``,
  ``labels``, ``camId``, ``train_idx``, ``query_idx``, ``gallery_idx``, indices 1-based) and ``images``
  (``images_{labeled,detected}``). A split whose name contains ``train`` reads ``train_idx``; any other
  reads ``query_idx`` + ``gallery_idx``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

from hcbench.data.cards import DatasetCard
from hcbench.data.readers import _matlab as M
from hcbench.data.readers._common import read_lines, require_file, role_paths, take
from hcbench.data.transforms.image import write_image
from hcbench.data.types import DataFormatError, DatasetSplit, ReIDMeta, ReIDSample
from hcbench.registry import DATASETS

# (image, pid, camid 0-based, role) -- role: train/query/gallery (MSMT17 also: val)
ReIDItem = tuple[np.ndarray, int, int, str]

ROLES = ("train", "query", "gallery")
MARKET_NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
MARKET_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def _meta(card: DatasetCard) -> ReIDMeta:
    meta = card.meta()
    assert isinstance(meta, ReIDMeta)
    return meta


def _check_cam(camid: int, card: DatasetCard, path: Path, record: str) -> None:
    n = card.num_cameras
    if camid < 0 or (n and camid >= n):
        raise DataFormatError(path, f"camera {camid + 1} outside 1..{n or '?'}", record=record)


# --------------------------------------------------------------------------- Market-1501
def parse_market_name(name: str) -> tuple[int, int, int, int, int]:
    """``0002_c1s1_000451_03.jpg`` -> (pid 2, cam 1, seq 1, frame 451, n 3); ValueError otherwise."""
    m = MARKET_NAME.match(name)
    if not m:
        raise ValueError(f"file name {name!r} does not match '{{pid}}_c{{cam}}s{{seq}}_{{frame}}_{{n}}.jpg'")
    pid, cam, seq, frame, n = m.groups()
    return int(pid), int(cam), int(seq), int(frame), int(n)


@DATASETS.register("market1501")
def read_market1501(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    files = card.split(split).files
    roles = [r for r in ROLES if r in files]
    p = role_paths(Path(root), card, split, roles or ["train"])
    keep_junk = bool(card.options.get("keep_junk", False))
    samples = []
    for role in roles:
        folder = p[role]
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: missing ({role} image folder of split {split!r})")
        out = []
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() != ".jpg":
                continue  # the real folders hold a stray Thumbs.db
            try:
                pid, cam, _, _, _ = parse_market_name(f.name)
            except ValueError as e:
                raise DataFormatError(folder, str(e), record=f.name) from None
            if pid == -1 and not keep_junk:
                continue
            _check_cam(cam - 1, card, folder, f.name)
            out.append(ReIDSample(f, pid, cam - 1, role))  # type: ignore[arg-type]
        samples += take(out, limit)
    return DatasetSplit(card.name, split, "reid", samples, _meta(card), files=[p[r] for r in roles])


def market_name(pid: int, camid: int, frame: int, seq: int = 1, n: int = 1) -> str:
    return f"{'-1' if pid == -1 else f'{pid:04d}'}_c{camid + 1}s{seq}_{frame:06d}_{n:02d}.jpg"


def write_market1501(root: Path, items: Iterable[ReIDItem]) -> dict[str, dict[str, str]]:
    """Write ``bounding_box_train``/``query``/``bounding_box_test``; returns card ``files`` per split.

    Frame numbers are the item index, so names are unique and sort in item order per folder.
    """
    root = Path(root)
    for k, (image, pid, camid, role) in enumerate(items):
        if role not in MARKET_DIRS:
            raise ValueError(f"item {k}: role {role!r} not in {sorted(MARKET_DIRS)}")
        write_image(root / MARKET_DIRS[role] / market_name(int(pid), int(camid), frame=k), image)
    return {"train": {"train": MARKET_DIRS["train"]},
            "test": {"query": MARKET_DIRS["query"], "gallery": MARKET_DIRS["gallery"]}}


# --------------------------------------------------------------------------- MSMT17
MSMT_LISTS = ("train", "val", "query", "gallery")


def msmt_camera(relpath: str) -> int:
    """1-based camera: the 3rd ``_`` field of the file name (``0000_000_01_0303morning_0015_0.jpg`` -> 1)."""
    return int(PurePosixPath(relpath).name.split("_")[2])


@DATASETS.register("msmt17")
def read_msmt17(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    files = card.split(split).files
    lists = [r for r in MSMT_LISTS if r in files]
    p = role_paths(Path(root), card, split, ("images", *(lists or ["train"])))
    per_role: dict[str, list[ReIDSample]] = {}
    for lst in lists:
        path = require_file(p[lst], f"list_{lst} of split {split!r}")
        role = "train" if lst in ("train", "val") else lst
        for line_no, text in read_lines(path):
            parts = text.split()
            record = f"line {line_no}"
            if len(parts) != 2:
                raise DataFormatError(path, f"expected 'relpath pid', got {text!r}", record=record)
            rel = parts[0]
            try:
                pid = int(parts[1])
            except ValueError:
                raise DataFormatError(path, f"pid {parts[1]!r} is not an integer", record=record) from None
            try:
                cam = msmt_camera(rel)
            except (ValueError, IndexError):
                raise DataFormatError(path, f"no camera number in the 3rd '_' field of {rel!r}", record=record) from None
            _check_cam(cam - 1, card, path, record)
            per_role.setdefault(role, []).append(ReIDSample(p["images"] / rel, pid, cam - 1, role))  # type: ignore[arg-type]
    samples = [s for r in ROLES for s in take(per_role.get(r, []), limit)]
    return DatasetSplit(card.name, split, "reid", samples, _meta(card), files=[p[r] for r in lists])


def msmt_name(pid: int, camid: int, k: int) -> str:
    return f"{pid:04d}/{pid:04d}_{k:03d}_{camid + 1:02d}_0303morning_{k:04d}_0.jpg"


def write_msmt17(root: Path, items: Iterable[ReIDItem]) -> dict[str, dict[str, str]]:
    """Write ``train/``, ``test/`` and ``list_{train,val,query,gallery}.txt``; returns card ``files`` per split.

    Roles ``train``/``val`` go to ``train/``, ``query``/``gallery`` to ``test/`` (as in MSMT17 v1).
    """
    root = Path(root)
    lines: dict[str, list[str]] = {r: [] for r in MSMT_LISTS}
    for k, (image, pid, camid, role) in enumerate(items):
        if role not in lines:
            raise ValueError(f"item {k}: role {role!r} not in {MSMT_LISTS}")
        rel = msmt_name(int(pid), int(camid), k)
        write_image(root / ("train" if role in ("train", "val") else "test") / rel, image)
        lines[role].append(f"{rel} {int(pid)}\n")
    for role, ls in lines.items():
        (root / f"list_{role}.txt").write_text("".join(ls))
    train = {"images": "train", "train": "list_train.txt"}
    if lines["val"]:
        train["val"] = "list_val.txt"
    return {"train": train, "test": {"images": "test", "query": "list_query.txt", "gallery": "list_gallery.txt"}}


# --------------------------------------------------------------------------- CUHK03-NP
@DATASETS.register("cuhk03_np")
def read_cuhk03_np(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    p = role_paths(Path(root), card, split, ("config", "images"))
    path = require_file(p["config"], f"new-protocol config of split {split!r}")
    mat = M.load_mat(path)
    filelist = M.cell_strings(M.get_field(mat, "filelist", path), path, "filelist")
    n = len(filelist)
    labels = M.int_vector(M.get_field(mat, "labels", path), path, "labels")
    cams = M.int_vector(M.get_field(mat, "camId", path), path, "camId")
    if len(labels) != n or len(cams) != n:
        raise DataFormatError(path, f"filelist has {n} entries but labels {len(labels)} and camId {len(cams)}")
    roles = ["train"] if "train" in split else ["query", "gallery"]
    samples = []
    for role in roles:
        idx = M.index_vector(M.get_field(mat, f"{role}_idx", path), n, path, f"{role}_idx")
        for i in take(list(idx), limit):
            _check_cam(int(cams[i]) - 1, card, path, f"camId[{i}] ({filelist[i]})")
            samples.append(ReIDSample(p["images"] / filelist[i], int(labels[i]), int(cams[i]) - 1, role))  # type: ignore[arg-type]
    return DatasetSplit(card.name, split, "reid", samples, _meta(card), files=[path])


def write_cuhk03_np(root: Path, items: Iterable[ReIDItem], variant: str = "labeled") -> dict[str, dict[str, str]]:
    """Write ``images_{variant}/`` and ``cuhk03_new_protocol_config_{variant}.mat``; returns card ``files``.

    File names follow CUHK03 (``{pair}_{pid:03d}_{cam}_{k:02d}.png``, cameras 1/2 of pair 1); the
    config stores N x 1 double columns (``labels``, ``camId``, ``*_idx`` 1-based) and an N x 1
    ``filelist`` cell, as the real files do.
    """
    root = Path(root)
    folder = f"images_{variant}"
    names, labels, cams = [], [], []
    idx: dict[str, list[int]] = {r: [] for r in ROLES}
    for k, (image, pid, camid, role) in enumerate(items):
        if role not in idx:
            raise ValueError(f"item {k}: role {role!r} not in {ROLES}")
        name = f"1_{int(pid):03d}_{int(camid) + 1}_{k:02d}.png"
        write_image(root / folder / name, image)
        names.append(name)
        labels.append(int(pid))
        cams.append(int(camid) + 1)
        idx[role].append(k + 1)
    config = f"cuhk03_new_protocol_config_{variant}.mat"
    M.save_mat(root / config, {
        "camId": M.column(cams), "filelist": M.cell_column(names), "gallery_idx": M.column(idx["gallery"]),
        "labels": M.column(labels), "query_idx": M.column(idx["query"]), "train_idx": M.column(idx["train"])})
    files = {"config": config, "images": folder}
    return {"train": dict(files), "test": dict(files)}
