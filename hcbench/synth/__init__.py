"""Procedural human-centric scenes written in the real on-disk formats (``hcbench data synth``).

A stylised articulated person (17 COCO joints, joint limits, build, clothing, accessories) is
drawn with PIL as LIP body-part regions over varied backgrounds; labels (keypoints with
visibility, part maps, boxes, identities, attributes) are read off the same raster as the
pixels. ``write_suite`` writes five datasets (``synth_pose``, ``synth_parsing``, ``synth_reid``,
``synth_attr``, ``synth_det``) through the format writers of ``hcbench.data.readers`` so the real
readers read them back.
"""

from hcbench.synth.suite import suite_counts, synth_specs, write_suite


def __getattr__(name: str):  # DATASETS / SIZES are read from the family registry when asked for
    if name in ("DATASETS", "SIZES"):
        from hcbench.synth import suite

        return getattr(suite, name)
    raise AttributeError(name)


__all__ = ["DATASETS", "SIZES", "suite_counts", "synth_specs", "write_suite"]
