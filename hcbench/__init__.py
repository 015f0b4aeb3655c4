"""hcbench: benchmark and evaluation harness for human-centric vision backbones.

Importing the package is cheap; torch/timm load when a backbone or adapter is used.
"""

__version__ = "0.1.0"
