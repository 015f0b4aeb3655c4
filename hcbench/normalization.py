"""Input statistics ([0, 1] units, RGB), defined once for all of hcbench. A bottom-layer module
(no imports), so data transforms, backbones and registration can read it without torch.

Only backbones normalise (:class:`hcbench.backbones.features.Backbone`); transforms produce [0, 1]
floats and use IMAGENET_MEAN at most as a fill colour (random erasing)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # TransReID, SOLIDER-REID
