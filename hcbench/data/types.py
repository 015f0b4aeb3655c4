"""Sample types shared by readers, synthetic writers, transforms and adapters.

Every reader returns a :class:`DatasetSplit` whose ``samples`` are one of the per-family
records below and whose ``meta`` is the family's metadata object. Coordinates are in pixels
of the original image; boxes are ``[x, y, w, h]`` (COCO convention) unless a name says
otherwise. These types import nothing heavy (numpy only) so that any layer may use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import numpy as np

from hcbench.errors import UserError, worker_message

# A task family's name. The families are a registry (``hcbench.registry.FAMILIES``), not a closed list.
Family = str


class DataFormatError(UserError, ValueError):
    """Malformed dataset input. The message names the file and, where known, the record."""

    def __init__(self, path: str | Path, message: str | None = None, record: str | int | None = None):
        if message is None:
            # rebuilt from its text alone: unpickled, or re-raised by torch from a DataLoader
            # worker (whose text is the worker's traceback: keep its last line, the message)
            text = worker_message(str(path))
            self.path, self.record = text.partition(": ")[0], None
            super().__init__(text)
            return
        self.path = str(path)
        self.record = record
        where = f"{self.path}" + (f" [record {record}]" if record is not None else "")
        super().__init__(f"{where}: {message}")


# --------------------------------------------------------------------------- pose
@dataclass(frozen=True)
class KeypointMeta:
    """Per-dataset keypoint definition (names, left/right flip pairs, skeleton, OKS sigmas)."""

    name: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] = ()
    upper_body_ids: tuple[int, ...] = ()  # used by half-body augmentation
    lower_body_ids: tuple[int, ...] = ()

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def flip_index(self) -> np.ndarray:
        """Permutation that maps each keypoint to its mirrored partner."""
        idx = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            idx[a], idx[b] = b, a
        return idx


@dataclass
class PoseInstance:
    """One annotated person for top-down pose estimation."""

    image: Path
    image_id: int
    bbox: np.ndarray  # (4,) float32 [x, y, w, h]
    keypoints: np.ndarray  # (K, 3) float32 [x, y, visibility]
    ann_id: int = -1
    area: float = 0.0
    iscrowd: int = 0
    width: int = 0
    height: int = 0
    head_size: float | None = None  # MPII: PCKh normaliser (0.6 x head-box diagonal)
    score: float = 1.0  # detection score when boxes come from a detector
    extra: dict = field(default_factory=dict)

    @property
    def num_visible(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())


# --------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class ParsingMeta:
    name: str
    class_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()  # class ids swapped by a horizontal flip
    ignore_index: int = 255
    # raw label value -> train id (others -> ignore_index); None means identity
    label_map: tuple[tuple[int, int], ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def flip_lut(self) -> np.ndarray:
        """256-entry lookup table applied to a label map after a horizontal flip."""
        lut = np.arange(256, dtype=np.uint8)
        for a, b in self.flip_pairs:
            lut[a], lut[b] = b, a
        return lut

    def remap_lut(self) -> np.ndarray:
        """256-entry lookup table from raw label values to train ids."""
        if self.label_map is None:
            return np.arange(256, dtype=np.uint8)
        lut = np.full(256, self.ignore_index, dtype=np.uint8)
        for raw, train in self.label_map:
            lut[raw] = train
        return lut


@dataclass
class ParsingSample:
    image: Path
    label: Path
    sample_id: str


# --------------------------------------------------------------------------- detection
@dataclass
class DetectionSample:
    """One image with pedestrian boxes; ``ignore`` regions neither count nor penalise."""

    image: Path
    image_id: str
    boxes: np.ndarray  # (N, 4) float32 full-body [x, y, w, h]
    visible: np.ndarray  # (N, 4) float32 visible-part boxes (== boxes when unknown)
    ignore: np.ndarray  # (M, 4) float32 ignore regions [x, y, w, h]
    heads: np.ndarray | None = None  # (N, 4) head boxes when the format has them
    width: int = 0
    height: int = 0
    labels: np.ndarray | None = None  # (N,) int dataset class (CityPersons 1..5)


@dataclass(frozen=True)
class DetectionMeta:
    name: str
    class_names: tuple[str, ...] = ("person",)


# --------------------------------------------------------------------------- reid
ReIDRole = Literal["train", "query", "gallery"]


@dataclass
class ReIDSample:
    image: Path
    pid: int  # -1 junk, 0 distractor (Market); train pids are relabelled by the adapter
    camid: int  # 0-based
    role: ReIDRole


@dataclass(frozen=True)
class ReIDMeta:
    name: str
    num_cameras: int = 0


# --------------------------------------------------------------------------- attributes
@dataclass
class AttributeSample:
    image: Path
    labels: np.ndarray  # (A,) uint8 in {0, 1}


@dataclass(frozen=True)
class AttributeMeta:
    name: str
    attribute_names: tuple[str, ...]

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)


# --------------------------------------------------------------------------- container
S = TypeVar("S")


@dataclass
class DatasetSplit(Generic[S]):
    """What every reader returns: the samples of one split plus family metadata.

    ``files`` lists the annotation files the split was read from; their combined sha256 is
    the dataset fingerprint stored in each result record.
    """

    name: str
    split: str
    family: Family
    samples: list[S]
    meta: Any  # the family's metadata (KeypointMeta, ParsingMeta, ...; Family.meta_type), or None
    files: list[Path] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # e.g. {"coco_gt": path} for pose evaluation

    def __len__(self) -> int:
        return len(self.samples)
