"""Moving data between host and GPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._backend import resolve_backend, rsc, x_on_gpu
from .._timing import note_backend, timed

if TYPE_CHECKING:
    from anndata import AnnData


@timed("to GPU")
def to_gpu(adata: AnnData) -> AnnData:
    """Move ``X`` to the GPU when the session backend is the GPU (a no-op on CPU), in place."""
    if resolve_backend() == "gpu" and not x_on_gpu(adata):
        note_backend("gpu")
        rsc().get.anndata_to_GPU(adata)
    return adata


@timed("to CPU")
def to_cpu(adata: AnnData, *, copy: bool = False) -> AnnData:
    """Move ``X`` (and layers) back to host memory; returns a copy when ``copy``."""
    if copy:
        adata = adata.copy()
    if x_on_gpu(adata):
        note_backend("gpu")
        rsc().get.anndata_to_CPU(adata)
    return adata
