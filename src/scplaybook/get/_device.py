"""Moving data between host and GPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._backend import gpu_name, resolve_backend, rsc, x_on_gpu
from .._errors import GPUMemoryError
from .._timing import note_backend, timed

if TYPE_CHECKING:
    from anndata import AnnData

_GIB = 1024**3


def free_gpu_bytes() -> int:
    """Free memory on the current CUDA device, in bytes."""
    import cupy

    return int(cupy.cuda.runtime.memGetInfo()[0])


def gpu_bytes_needed(adata: AnnData, *, n_top_genes: int = 2000) -> int:
    """Estimate the GPU memory the playbook's preprocessing needs for ``adata``, in bytes.

    The peak holds the count matrix about three times (the matrix, the filtered copy and the
    log-normalised ``raw``) plus the dense scaled matrix of the highly variable genes twice.
    CSR indices are 64-bit past 2^31 - 1 non-zeros.
    """
    import scipy.sparse as sp

    X = adata.X
    if sp.issparse(X):
        idx = 8 if X.nnz >= 2**31 - 1 else 4
        x_bytes = X.nnz * (X.dtype.itemsize + idx) + (X.shape[0] + 1) * idx
    else:
        x_bytes = X.size * X.dtype.itemsize
    dense_hvg = adata.n_obs * min(n_top_genes, adata.n_vars) * 4
    return 3 * x_bytes + 2 * dense_hvg


@timed("to GPU")
def to_gpu(adata: AnnData, *, n_top_genes: int = 2000) -> AnnData:
    """Move ``X`` to the GPU when the session backend is the GPU (a no-op on CPU), in place.

    Raises
    ------
    GPUMemoryError
        Before moving anything, when the analysis of this matrix would not fit in the free GPU
        memory (see :func:`gpu_bytes_needed`); the message says what to change.
    """
    if resolve_backend() == "gpu" and not x_on_gpu(adata):
        need, free = gpu_bytes_needed(adata, n_top_genes=n_top_genes), free_gpu_bytes()
        if need > free:
            raise GPUMemoryError(
                f"{adata.n_obs} cells x {adata.n_vars} genes need about {need / _GIB:.1f} GiB of GPU memory "
                f"for this analysis; {free / _GIB:.1f} GiB are free on {gpu_name()}. Nothing was moved. "
                "Analyse fewer cells (subsample, or split by sample), use a GPU with more memory, or run "
                "with backend='cpu'."
            )
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
