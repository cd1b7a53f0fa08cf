"""Whether a matrix holds raw counts: the check every reader and every lazily read chunk runs."""

from __future__ import annotations

import numpy as np


def not_counts(data, xp=np) -> str | None:
    """Say why the stored values ``data`` of a matrix are not raw counts, or ``None`` if they are.

    ``xp`` is NumPy, or CuPy for values on the GPU (four reductions, no copy to the host).
    """
    if data.size == 0:
        return None
    if not bool(xp.isfinite(data).all()):
        return "the matrix holds NaN or infinite values; raw counts are finite."
    low, fractional = float(data.min()), bool(xp.any(data != xp.floor(data)))
    if low < 0:
        kind = "scaled (z-scored)" if fractional else "not counts"
        return f"the matrix has negative values ({low:g}); it looks {kind}. The playbook needs raw UMI counts."
    if fractional:
        high = float(data.max())
        what = "log-normalised" if high < 30 else "normalised, not raw counts"
        return (
            f"the matrix has non-integer values (max {high:.3g}); it looks {what}. The playbook "
            "needs raw UMI counts (often in adata.raw or layers['counts'])."
        )
    return None
