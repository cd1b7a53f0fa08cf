"""Reading inputs and writing results."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._checksums import verify_checksum

if TYPE_CHECKING:
    from ._read import check_raw_counts, read

__all__ = [
    "check_raw_counts",
    "read",
    "verify_checksum",
]


def __getattr__(name: str):
    # the readers bring AnnData and h5py; the runner's checksums and atomic writes do not need them
    if name in ("check_raw_counts", "read"):
        return getattr(importlib.import_module("._read", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
