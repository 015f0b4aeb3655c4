"""Procedural human-centric scenes written in the real on-disk formats (``hcbench data synth``).

A stylised articulated person (17 COCO joints, joint limits, build, clothing, accessories) is
drawn with PIL as LIP body-part regions over varied backgrounds; labels (keypoints with
visibility, part maps, boxes, identities, attributes) are read off the same raster as the
pixels. ``write_suite`` writes five datasets (``synth_pose``, ``synth_parsing``, ``synth_reid``,
``synth_attr``, ``synth_det``) through the format writers of ``hcbench.data.readers`` so the real
readers read them back.
"""

from hcbench.synth.suite import DATASETS, SIZES, write_suite

__all__ = ["DATASETS", "SIZES", "write_suite"]
