"""hcbench: benchmark and evaluation harness for human-centric vision backbones.

Importing the package is cheap; torch/timm load when a backbone or adapter is used.

Importing it also sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already sets it: torch's
OpenMP threads then sleep between parallel regions instead of spinning for the CPU. This has to
happen before torch is first imported (the OpenMP runtime reads it when it loads), which is why it
lives here and not in :mod:`hcbench.engine.threads`. Measured on 2 cores (issue 18,
``benchmarks/main_job_busy.py --card synth_reid``): spinning threads made a card take 2.75x its
idle CPU time and 6.8x its wall time next to a busy neighbour; passive ones 1.04x and 2.5x, with
the same idle wall time and 21 % less idle CPU. Set ``OMP_WAIT_POLICY=ACTIVE`` to get spinning back.
"""

import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
