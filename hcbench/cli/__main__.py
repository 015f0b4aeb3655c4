"""``python -m hcbench.cli`` (what ``torchrun -m`` and the tests' subprocesses start)."""

import sys

from hcbench.cli import main

sys.exit(main())
