"""Number formatting shared by the leaderboard, the paper table, the report and ``hcbench list``."""

from __future__ import annotations

import math


def significant(x: float | None, digits: int = 3, missing: str = "—") -> str:
    """``x`` with ``digits`` significant digits in plain notation (0.0716, 1.22, 17.6, 1234):
    a fixed number of decimals would print a tiny backbone's 0.0716 GFLOPs as 0.0."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return missing
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    text = f"{x:.{decimals}f}"
    # rounding can carry into a new digit (9.996 -> "10.00"): drop the extra decimal
    if decimals and len(text.replace("-", "").replace(".", "").lstrip("0")) > digits:
        text = f"{x:.{decimals - 1}f}"
    return text
