"""Principal component analysis."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._chunks import (
    all_to_host,
    compute_rows,
    dense,
    host_array,
    on_gpu,
    reduce_chunks,
    row_blocks,
    sum_over_chunks,
    xp_of,
)  # fmt: skip
from .._dispatch import dispatch, results_to_host
from .._errors import ParameterError
from .._settings import logger
from .._timing import timed

if TYPE_CHECKING:
    from anndata import AnnData


@timed("PCA")
def pca(adata: AnnData, *, n_comps: int = 50, random_state: int = 0) -> AnnData:
    """Compute ``n_comps`` principal components into ``obsm['X_pca']`` and ``uns['pca']``.

    On the GPU, a dense matrix too large for rapids-singlecell's PCA (which copies it) is
    decomposed through its genes x genes covariance instead (:func:`pca_from_gram`): no copy of
    the matrix, the same components up to sign.

    Parameters
    ----------
    adata
        Scaled data (``X`` dense or sparse, in one matrix or in row chunks).
    n_comps
        Principal components to compute.
    random_state
        Seed of the solver.

    Returns
    -------
    ``adata`` with ``obsm['X_pca']``, ``varm['PCs']`` and ``uns['pca']`` (variance, variance
    ratio), all host NumPy arrays.
    """
    limit = min(adata.n_obs, adata.n_vars) - 1
    if n_comps > limit:
        raise ParameterError(
            f"n_pcs={n_comps} is too many for {adata.n_obs} cells x {adata.n_vars} genes: use at most {limit}."
        )
    backend = dispatch(adata, "pca", on="X")
    if backend.chunked:
        logger.info(f"    PCA from the covariance, over {adata.X.numblocks[0]} row chunks")
        _store(adata, *_pca_chunks(adata.X, n_comps), method="covariance (row chunks)")
        # X stays on the workers: the steps up to differential expression need only X_pca, and
        # moving X into this process (tens of GB at a million cells) is its own step there
    elif backend.gpu and not hasattr(adata.X, "indptr") and _copy_would_not_fit(adata.X):
        import cupy as cp

        logger.info("    dense matrix too large to copy on the GPU: PCA from the covariance")
        parts = pca_from_gram(adata.X, n_comps, cp)
        _store(adata, *(a.get() for a in parts), method="covariance")
    else:
        backend.sc.pp.pca(adata, n_comps=n_comps, random_state=random_state)
        # small results live on the host, where plots and the CPU-side steps read them
        results_to_host(adata, obsm=["X_pca"], varm=["PCs"], uns=["pca"])
    return adata


def _store(adata: AnnData, scores, pcs, var, ratio, *, method: str) -> None:
    adata.obsm["X_pca"], adata.varm["PCs"] = scores, pcs
    adata.uns["pca"] = {
        "params": {"zero_center": True, "method": method},
        "variance": var,
        "variance_ratio": ratio,
    }


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
    mean, pcs, var, ratio = components(*gram(X, xp), X.shape[0], n_comps, xp)
    return project(X, mean, pcs), pcs, var, ratio


def gram(X, xp=np):
    """``XᵀX`` (float32, returned as float64) and the column sums of ``X`` (float64).

    On the GPU ``XᵀX`` is one cuBLAS SYRK (half the work of a GEMM: one triangle, mirrored).
    """
    total = column_sum(X, xp)
    if xp is np or not X.flags.c_contiguous:
        return (X.T @ X).astype(xp.float64), total
    from cupy import cublas

    # X is row-major, so X read column-major is Xᵀ: SYRK("N") of it gives XᵀX (upper triangle)
    upper = cublas.syrk("N", X.T, lower=False).astype(xp.float64)
    return xp.triu(upper) + xp.triu(upper, 1).T, total


def column_sum(X, xp=np):
    """Column sums of a dense matrix as one GEMV (``1ᵀX``), returned as float64.

    For the sums of a chunk and of its squares (scaling's moments) two GEMVs took 3.7 ms against
    7.9 ms for CuPy's float64 reductions (110k x 5,000 float32 on an H200, 2026-11-24).
    """
    return (xp.ones((1, X.shape[0]), dtype=X.dtype) @ X).ravel().astype(xp.float64)


def components(xtx, total, n: int, n_comps: int, xp=np):
    """Mean, loadings (float32), variances and variance ratios from ``XᵀX`` and column sums."""
    mean = total / n
    cov = (xtx - n * xp.outer(mean, mean)) / (n - 1)
    w, v = xp.linalg.eigh(cov)
    top = xp.argsort(w)[::-1][:n_comps]
    w, v = w[top], v[:, top]
    v = v * xp.sign(v[xp.abs(v).argmax(axis=0), xp.arange(n_comps)])
    return mean, v.astype(xp.float32), w, w / xp.trace(cov)


def project(X, mean, pcs):
    """Scores of the rows of ``X`` on the loadings ``pcs`` (``X`` centred by ``mean``)."""
    return X @ pcs - mean.astype(pcs.dtype) @ pcs


def _gram_chunk(block):
    return gram(dense(block), xp_of(block))


def _scores_chunk(block, mean, pcs):
    xp = xp_of(block)
    return host_array(project(dense(block), xp.asarray(mean), xp.asarray(pcs)))


def _scores_of(block, comps: tuple):
    mean, pcs = comps[:2]
    return _scores_chunk(block, mean, pcs)


def _components_host(sums: tuple, n: int, n_comps: int) -> tuple:
    xtx, total = sums
    return all_to_host(components(xtx, total, n, n_comps, xp_of(xtx)))


def _pca_chunks(X, n_comps: int):
    """PCA of chunked ``X`` through its genes x genes covariance (see ``pp._pca.pca_from_gram``).

    The covariance is summed where the chunks are and, on GPUs, decomposed there too, so that
    only the loadings come to this process; the scores are computed where the chunks are.
    Returns host arrays: scores, loadings, variances, variance ratios.
    """
    import dask

    blocks = [b for b, _, _ in row_blocks(X)]
    if on_gpu(X):  # decomposed on a worker's GPU; the scores follow in the same submission
        comps = reduce_chunks(X, _gram_chunk, finish=_components_host, args=(X.shape[0], n_comps))
        parts = [dask.delayed(_scores_of)(b, comps) for b in blocks]
        scores, (mean, pcs, var, ratio) = compute_rows(parts, X.chunks[0], comps)
    else:  # here, where NumPy has all the cores (a CPU worker has one thread)
        xtx, total = sum_over_chunks(X, _gram_chunk)
        mean, pcs, var, ratio = components(xtx, total, X.shape[0], n_comps, np)
        parts = [dask.delayed(_scores_chunk)(b, mean, pcs) for b in blocks]
        (scores,) = compute_rows(parts, X.chunks[0])
    return scores, pcs, var, ratio
