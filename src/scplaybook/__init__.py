"""scplaybook: one single-cell analysis, the same calls on GPU (rapids-singlecell) and CPU (scanpy)."""

from . import datasets, get, io, pl, pp, runner, tl
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
