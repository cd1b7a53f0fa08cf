"""Principal component analysis."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._backend import backend_for_X, is_gpu_array, rsc
from .._errors import ParameterError
from .._settings import logger
from .._timing import note_backend, timed

if TYPE_CHECKING:
    from anndata import AnnData


@timed("PCA")
def pca(adata: AnnData, *, n_comps: int = 50, random_state: int = 0) -> AnnData:
    """Compute ``n_comps`` principal components into ``obsm['X_pca']`` and ``uns['pca']``.

    On the GPU, a dense matrix too large for rapids-singlecell's PCA (which copies it) is
    decomposed through its genes x genes covariance instead (:func:`pca_from_gram`): no copy of
    the matrix, the same components up to sign.
    """
    limit = min(adata.n_obs, adata.n_vars) - 1
    if n_comps > limit:
        raise ParameterError(
            f"n_pcs={n_comps} is too many for {adata.n_obs} cells x {adata.n_vars} genes: use at most {limit}."
        )
    gpu = note_backend(backend_for_X(adata, "pca")) == "gpu"
    if gpu and not hasattr(adata.X, "indptr") and _copy_would_not_fit(adata.X):
        import cupy as cp

        logger.info("    dense matrix too large to copy on the GPU: PCA from the covariance")
        scores, pcs, var, ratio = pca_from_gram(adata.X, n_comps, cp)
        adata.obsm["X_pca"], adata.varm["PCs"] = scores.get(), pcs.get()
        adata.uns["pca"] = {
            "params": {"zero_center": True, "method": "covariance"},
            "variance": var.get(),
            "variance_ratio": ratio.get(),
        }
    elif gpu:
        rsc().pp.pca(adata, n_comps=n_comps, random_state=random_state)
        # small results live on the host, where plots and the CPU-side steps read them
        for store, key in ((adata.obsm, "X_pca"), (adata.varm, "PCs")):
            if key in store and is_gpu_array(store[key]):
                store[key] = store[key].get()
        for k, v in adata.uns["pca"].items():
            if is_gpu_array(v):
                adata.uns["pca"][k] = v.get()
    else:
        import scanpy as sc

        sc.pp.pca(adata, n_comps=n_comps, random_state=random_state)
    return adata


def _copy_would_not_fit(X) -> bool:
    # measured at 1.3M cells: rapids-singlecell's dense PCA asked for a second 24.5 GB copy
    from ..get import free_gpu_bytes

    return 3 * X.nbytes > free_gpu_bytes()


def pca_from_gram(X, n_comps: int, xp=np):
    """Principal components of a dense cells x genes matrix from its covariance, without a copy.

    The genes x genes covariance comes from one GEMM (``XᵀX``, float32 with float64 correction for
    the mean), its leading eigenvectors from ``eigh``; each component's sign makes its largest
    loading positive. Returns scores (cells x ``n_comps``, float32), loadings (genes x ``n_comps``),
    variances and variance ratios.
    """
    n = X.shape[0]
    mean = X.mean(axis=0, dtype=xp.float64)
    cov = ((X.T @ X).astype(xp.float64) - n * xp.outer(mean, mean)) / (n - 1)
    w, v = xp.linalg.eigh(cov)
    top = xp.argsort(w)[::-1][:n_comps]
    w, v = w[top], v[:, top]
    v = v * xp.sign(v[xp.abs(v).argmax(axis=0), xp.arange(n_comps)])
    v32 = v.astype(xp.float32)
    scores = X @ v32 - mean.astype(xp.float32) @ v32
    return scores, v32, w, w / xp.trace(cov)
