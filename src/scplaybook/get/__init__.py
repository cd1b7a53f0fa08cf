"""Getting data and results in and out: device moves, marker tables, timings."""

from ._device import free_gpu_bytes, gather_x, to_cpu, to_gpu
from ._results import expression, markers, timings

__all__ = [
    "expression",
    "free_gpu_bytes",
    "gather_x",
    "markers",
    "timings",
    "to_cpu",
    "to_gpu",
]
