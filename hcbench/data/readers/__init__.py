"""Readers of the real on-disk formats, registered in ``hcbench.registry.DATASETS`` by format name.

Each reader is ``read(root: Path, split: str, card: DatasetCard, *, limit: int | None = None)
-> DatasetSplit`` and raises :class:`hcbench.data.types.DataFormatError` naming the file and
record at fault.
"""

from hcbench.data.readers import (  # noqa: F401
    attributes,
    coco,
    detection,
    fashionpedia,
    mpii,
    par_pickle,
    parsing,
    reid,
    t2i,
    wholebody,
)
