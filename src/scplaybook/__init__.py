"""scplaybook: one single-cell analysis, the same calls on GPU (rapids-singlecell) and CPU (scanpy)."""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, get, io, pl, pp, runner, tl
from ._backend import gpu_available, gpu_name, resolve_backend, set_backend
from ._chunks import start_dask
from ._errors import (
    BackendError,
    DownloadError,
    GPUMemoryError,
    InputError,
    ParameterError,
    PlaybookError,
)
from ._settings import settings
from .io import read

try:
    __version__ = version("scplaybook")
except PackageNotFoundError:  # imported from a checkout (the container puts src/ on the path)
    from ._settings import checkout_version

    __version__ = checkout_version()

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
