"""Getting data and results in and out: device moves, marker tables, timings."""

from ._device import to_cpu, to_gpu
from ._results import markers, timings

__all__ = ["markers", "timings", "to_cpu", "to_gpu"]
