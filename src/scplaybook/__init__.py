"""scplaybook: one single-cell analysis, the same calls on GPU (rapids-singlecell) and CPU (scanpy)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._backend import gpu_available, gpu_name, resolve_backend
from ._errors import (
    BackendError,
    DownloadError,
    GPUMemoryError,
    InputError,
    ParameterError,
    PlaybookError,
)
from ._session import set_backend, start_dask
from ._settings import package_version, settings

if TYPE_CHECKING:  # for type checkers; at run time each namespace is imported on first use
    from . import datasets, get, io, pl, pp, runner, tl
    from .io import read

__version__ = package_version()

__all__ = [
    "BackendError",
    "DownloadError",
    "GPUMemoryError",
    "InputError",
    "ParameterError",
    "PlaybookError",
    "datasets",
    "get",
    "gpu_available",
    "gpu_name",
    "io",
    "pl",
    "pp",
    "read",
    "resolve_backend",
    "runner",
    "set_backend",
    "settings",
    "start_dask",
    "tl",
]

#: The namespaces, imported when first used (``scp.pp``, ``from scplaybook import pl``): the
#: command line's runner needs none of them, and they bring AnnData, Dask and matplotlib.
_NAMESPACES = ("datasets", "get", "io", "pl", "pp", "runner", "tl")


def __getattr__(name: str):
    if name in _NAMESPACES:
        return importlib.import_module(f".{name}", __name__)
    if name == "read":
        return importlib.import_module(".io", __name__).read
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
