"""One dispatch for every step: which library runs it, recorded for the timing table.

A step asks :func:`dispatch` once; the answer says whether it runs on the GPU and hands it the
library with scanpy's API on that backend (``rapids_singlecell`` or ``scanpy``). Results that the
GPU library leaves as CuPy arrays come back to the host through :func:`results_to_host`, so that a
step's output is the same NumPy data on both backends.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ._backend import backend_for_graph, backend_for_X, gpu_library, is_gpu_array
from ._chunks import is_dask
from ._timing import note_backend

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import ModuleType

    from anndata import AnnData


@dataclass(frozen=True)
class Backend:
    """Where a step runs.

    Attributes
    ----------
    name
        ``"gpu"`` or ``"cpu"``.
    chunked
        Whether ``adata.X`` is held in row chunks (a Dask array: the step's chunked variant runs).
    """

    name: Literal["gpu", "cpu"]
    chunked: bool = False

    @property
    def gpu(self) -> bool:
        """Whether the step runs on the GPU."""
        return self.name == "gpu"

    @property
    def sc(self) -> ModuleType:
        """The library with scanpy's API on this backend: ``rapids_singlecell`` or ``scanpy``."""
        return gpu_library() if self.gpu else importlib.import_module("scanpy")


def dispatch(adata: AnnData, step: str, *, on: Literal["X", "graph"] = "graph") -> Backend:
    """Choose the backend of ``step`` and record it for the running timed step.

    Parameters
    ----------
    adata
        The data the step works on.
    step
        The step's name, for error messages.
    on
        ``"X"``: the step works on ``adata.X`` and runs where ``X`` lives. ``"graph"``: it works on
        embeddings or graphs and runs on the session backend.

    Returns
    -------
    The :class:`Backend` to run on, and whether ``X`` is in row chunks.

    Raises
    ------
    BackendError
        When ``X`` is on the GPU but the session is forced onto the CPU.
    """
    name = backend_for_X(adata, step) if on == "X" else backend_for_graph(adata, step)
    note_backend(name)
    return Backend(name, chunked=is_dask(adata.X))


def host(a):
    """Return ``a`` as a host array (NumPy, or SciPy sparse); host data are returned as they are."""
    if not is_gpu_array(a):
        return a
    from ._gpu import array_to_host

    return array_to_host(a)


def results_to_host(
    adata: AnnData, *, obsm: Iterable[str] = (), varm: Iterable[str] = (), uns: Iterable[str] = ()
) -> None:
    """Bring the named results a GPU step left as CuPy arrays back to the host, in place.

    Parameters
    ----------
    adata
        The data holding the results.
    obsm, varm
        Keys of ``adata.obsm`` / ``adata.varm`` (missing keys are skipped).
    uns
        Keys of ``adata.uns``: an array, or a dict whose array values are converted.
    """
    for store, keys in ((adata.obsm, obsm), (adata.varm, varm)):
        for k in keys:
            if k in store:
                store[k] = host(store[k])
    for k in uns:
        v = adata.uns.get(k)
        if isinstance(v, dict):
            adata.uns[k] = {kk: host(vv) for kk, vv in v.items()}
        elif v is not None:
            adata.uns[k] = host(v)
