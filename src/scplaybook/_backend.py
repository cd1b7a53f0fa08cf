"""Choosing between the GPU (rapids-singlecell) and the CPU (scanpy).

Nothing here imports CuPy or RAPIDS at module import time, so the package imports on any machine.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import TYPE_CHECKING, Literal

from ._errors import BackendError, ParameterError
from ._settings import settings

if TYPE_CHECKING:
    from anndata import AnnData

BACKENDS = ("auto", "gpu", "cpu")


@functools.cache
def _gpu_probe() -> tuple[bool, str]:
    """Whether rapids-singlecell imports and a CUDA device is visible, and why not."""
    if os.environ.get("SCPLAYBOOK_FORCE_CPU"):
        return False, "SCPLAYBOOK_FORCE_CPU is set"
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
    except ImportError:
        return False, "CuPy is not installed"
    except Exception as e:  # noqa: BLE001 - any CUDA failure means: no usable GPU
        return False, f"no usable CUDA device ({type(e).__name__}: {e})"
    if n < 1:
        return False, "no CUDA device is visible"
    try:
        importlib.import_module("rapids_singlecell")
    except ImportError as e:
        return False, f"rapids-singlecell does not import ({e})"
    return True, f"{n} CUDA device(s)"


def gpu_library():
    """Return ``rapids_singlecell`` (imported by the probe that chose the GPU backend).

    Raises
    ------
    BackendError
        When it does not import (a broken or mismatched RAPIDS install).
    """
    try:
        return importlib.import_module("rapids_singlecell")
    except ImportError as e:
        raise BackendError(
            f"rapids-singlecell does not import ({e}). Repair the GPU install "
            "(./setup/start_playbook.sh installs matching RAPIDS wheels) or use backend='cpu'."
        ) from e


def gpu_available() -> bool:
    """Return whether the GPU backend can run here.

    Returns
    -------
    ``True`` when rapids-singlecell imports and a CUDA device is visible.
    """
    return _gpu_probe()[0]


def resolve_backend(backend: str | None = None) -> Literal["gpu", "cpu"]:
    """Turn ``"auto"``/``"gpu"``/``"cpu"`` (default: the session setting) into ``"gpu"`` or ``"cpu"``.

    Returns
    -------
    ``"gpu"`` or ``"cpu"``: the backend that will run.

    Raises
    ------
    ParameterError
        For an unknown name, or ``"gpu"`` where no GPU backend can run.
    """
    backend = settings.backend if backend is None else backend
    if backend not in BACKENDS:
        raise ParameterError(f"backend={backend!r} is not known: use one of {', '.join(BACKENDS)}.")
    if backend == "cpu":
        return "cpu"
    ok, why = _gpu_probe()
    if backend == "gpu" and not ok:
        raise ParameterError(
            f"backend='gpu' was asked for but the GPU backend cannot run here: {why}. "
            "Install rapids-singlecell (see setup/) or use backend='cpu'."
        )
    return "gpu" if ok else "cpu"


def is_gpu_array(x: object) -> bool:
    """Return whether ``x`` is a CuPy array or CuPy sparse matrix (without importing CuPy)."""
    mod = type(x).__module__
    if mod.startswith("dask"):  # a Dask array of CuPy chunks
        return is_gpu_array(getattr(x, "_meta", None))
    return mod.startswith("cupy") or mod.startswith("cupyx")


def x_on_gpu(adata: AnnData) -> bool:
    """Return whether ``adata.X`` lives on the GPU."""
    return adata.X is not None and is_gpu_array(adata.X)


def backend_for_X(adata: AnnData, step: str) -> Literal["gpu", "cpu"]:
    """Backend for a step that works on ``adata.X``: where ``X`` lives.

    Raises
    ------
    BackendError
        When ``X`` is on the GPU but the session is forced onto the CPU.
    """
    if x_on_gpu(adata):
        if settings.backend == "cpu":
            raise BackendError(
                f"{step}: adata.X is a GPU array but the backend is forced to 'cpu'. "
                "Call scplaybook.get.to_cpu(adata) first, or set the backend to 'gpu'."
            )
        return "gpu"
    return "cpu"


def backend_for_graph(adata: AnnData, step: str) -> Literal["gpu", "cpu"]:
    """Backend for a step on embeddings or graphs: the session backend.

    ``X`` on the GPU with the CPU backend forced is refused, as for steps on ``X``.
    """
    if x_on_gpu(adata) and settings.backend == "cpu":
        backend_for_X(adata, step)
    return resolve_backend()


def synchronize() -> None:
    """Wait for queued GPU work, so that step timings are true (no-op without CuPy loaded)."""
    import sys

    cupy = sys.modules.get("cupy")
    if cupy is not None:
        try:
            cupy.cuda.Device().synchronize()
        except Exception:  # noqa: BLE001 - no device: nothing to wait for
            pass


def gpu_name() -> str | None:
    """Name of the current CUDA device, or ``None``.

    Returns
    -------
    The device's name, e.g. ``"NVIDIA H200"``; ``None`` without a usable GPU.
    """
    if not gpu_available():
        return None
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)
