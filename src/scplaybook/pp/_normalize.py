"""Normalisation, highly variable genes, regressing out and scaling."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import scipy.sparse as sp

from .._backend import is_gpu_array
from .._chunks import (
    compute_rows,
    dense,
    dense_copy,
    distributed_client,
    gather,
    map_chunks,
    row_blocks,
    sum_over_chunks,
    xp_of,
)  # fmt: skip
from .._dispatch import dispatch
from .._errors import ParameterError
from .._settings import logger
from .._subset import subset_var
from .._timing import timed

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData


@timed("normalize total")
def normalize_total(adata: AnnData, *, target_sum: float = 1e4) -> AnnData:
    """Scale each cell's counts to ``target_sum``, in place.

    Parameters
    ----------
    adata
        Counts.
    target_sum
        Total counts of each cell afterwards.

    Returns
    -------
    ``adata``, changed in place; each cell's total before scaling in
    ``obs['n_counts_before_normalize']`` (with ``uns['normalize_total']``, it turns the
    log-normalised values back into the counts when the results are saved).
    """
    backend = dispatch(adata, "normalize_total", on="X")
    if backend.chunked:  # only the per-cell totals come back
        import dask

        parts = [dask.delayed(_row_totals)(b) for b, _, _ in row_blocks(adata.X)]
        (totals,) = compute_rows(parts, adata.X.chunks[0])
    else:
        totals = _row_totals(adata.X)
    adata.obs["n_counts_before_normalize"] = totals
    adata.uns["normalize_total"] = {"target_sum": float(target_sum)}
    backend.sc.pp.normalize_total(adata, target_sum=target_sum)
    return adata


def _row_totals(X) -> np.ndarray:
    """Each row's sum, as a host float64 vector (any matrix or chunk, host or GPU)."""
    if is_gpu_array(X) and hasattr(X, "indptr"):
        from .._gpu import row_sums

        return row_sums(X).get()
    totals = X.sum(axis=1)
    return np.asarray(totals.get() if is_gpu_array(totals) else totals, dtype=np.float64).ravel()


@timed("log1p")
def log1p(adata: AnnData) -> AnnData:
    """Take ``log(1 + x)`` of ``X``, in place.

    Returns
    -------
    ``adata``, changed in place.
    """
    dispatch(adata, "log1p", on="X").sc.pp.log1p(adata)
    return adata


@timed("highly variable genes")
def highly_variable_genes(
    adata: AnnData,
    *,
    n_top_genes: int = 2000,
    flavor: str = "cell_ranger",
    keep_raw: bool = True,
    subset: bool = True,
) -> AnnData:
    """Find highly variable genes; keep the log-normalised matrix as ``raw``; subset.

    Parameters
    ----------
    adata
        Log-normalised data.
    n_top_genes
        Number of genes to keep (at most the number of genes).
    flavor
        As in scanpy (``"cell_ranger"`` in the original playbook, ``"seurat"``...).
    keep_raw
        Store the full log-normalised matrix in ``adata.raw`` first (differential expression
        and marker plots use it).
    subset
        Keep only the highly variable genes in ``X``.

    Returns
    -------
    ``adata`` with ``var['highly_variable']``; subset in place when ``subset``.
    """
    if n_top_genes > adata.n_vars:  # a small gene panel: a default that never fails
        logger.info(
            f"    n_top_genes={n_top_genes} is more than the {adata.n_vars} genes left after "
            "filtering: all of them are used"
        )
        n_top_genes = adata.n_vars
    backend = dispatch(adata, "highly_variable_genes", on="X")
    backend.sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes, flavor=flavor)
    chunked = backend.chunked
    if keep_raw and chunked:
        logger.info(
            "    data in row chunks: raw (all genes) is not kept; markers are ranked on the "
            "highly variable genes"
        )
    keep_full = keep_raw and not chunked
    full, full_var = (adata.X, adata.var.copy()) if keep_full else (None, None)
    if subset:
        subset_var(adata, adata.var["highly_variable"].to_numpy())
        if chunked and distributed_client() is not None:
            logger.info(
                "    X stays in row chunks across the Dask workers through PCA; it comes into this "
                "process when differential expression needs it"
            )
            # computed once by subset_var (normalised, log, these genes); the next steps read it
            # twice each
        elif chunked:  # reduced to the highly variable genes: one matrix from here on
            adata.X = gather(adata.X)
            import gc

            gc.collect()  # Dask graphs hold reference cycles: free the chunks' GPU memory now
            if is_gpu_array(adata.X):
                import cupy as cp

                cp.get_default_memory_pool().free_all_blocks()  # room for large dense blocks
    if keep_full:
        if not subset:  # X stays the full matrix: raw needs its own
            full = full.copy()
        # raw takes the full matrix itself, not a copy, set after subsetting (AnnData copies raw
        # when it subsets). On the GPU raw stays there until to_cpu: AnnData would move it to the
        # host on assignment (4 s at 200k cells).
        on_gpu = is_gpu_array(full)
        adata.raw = ad.AnnData(
            X=sp.csr_matrix(full.shape, dtype=np.float32) if on_gpu else full,
            obs=adata.obs[[]],
            var=full_var,
        )
        if on_gpu:
            adata.raw._X = full
    return adata


@timed("regress out")
def regress_out(adata: AnnData, keys: Sequence[str] = ("total_counts", "pct_counts_mt")) -> AnnData:
    """Regress out ``obs`` covariates from every gene at once, in place.

    One least-squares solve over all genes (an intercept plus ``keys``): the same residuals as
    scanpy's gene-by-gene regression, computed as ``X - D (DᵀD)⁻¹ DᵀX``. ``X`` becomes dense
    float32.

    Parameters
    ----------
    adata
        Log-normalised data.
    keys
        Columns of ``obs`` to regress out (an intercept is added).

    Returns
    -------
    ``adata`` with the residuals in ``X`` (dense float32).
    """
    missing = [k for k in keys if k not in adata.obs]
    if missing:
        raise ParameterError(
            f"regress_out keys {missing} are not in obs; it has: {', '.join(map(str, adata.obs.columns))}."
        )
    backend = dispatch(adata, "regress_out", on="X")
    gpu = backend.gpu
    cov = np.column_stack(
        [np.ones(adata.n_obs)] + [adata.obs[k].to_numpy(dtype=np.float64) for k in keys]
    )
    if backend.chunked:  # row chunks kept across the workers of a distributed client
        adata.X = _regress_out_chunks(adata.X, cov)
        return adata
    if gpu:
        import cupy as xp
        import cupyx.scipy.sparse as xsp
    else:
        import scipy.sparse as xsp

        xp = np
    X = adata.X
    if xsp.issparse(X):
        from .._gpu import to_dense

        X = to_dense(X.tocsr()) if gpu else X.toarray()
    X = xp.asarray(X, dtype=xp.float32)
    # the products with X are two GEMMs; the small solve (k x genes) runs on the host in float64
    D32 = xp.asarray(cov.astype(np.float32))
    dtx = D32.T @ X
    beta = fit_coefficients(cov, dtx.get() if gpu else dtx)
    subtract_fit(X, D32, xp.asarray(beta), xp)
    adata.X = X
    return adata


def fit_coefficients(design: np.ndarray, dtx) -> np.ndarray:
    """Least-squares coefficients (covariates x genes, float32) from ``design`` and ``designᵀX``."""
    return (np.linalg.pinv(design.T @ design) @ np.asarray(dtx, dtype=np.float64)).astype(
        np.float32
    )


def subtract_fit(X, design32, beta, xp) -> None:
    """``X -= design @ beta`` in place, a block of genes at a time (temporaries stay < 1 GiB)."""
    step = max(1, 2**28 // max(X.shape[0], 1))
    for j in range(0, X.shape[1], step):
        X[:, j : j + step] -= design32 @ beta[:, j : j + step]


@timed("scale")
def scale(adata: AnnData, *, max_value: float | None = 10.0) -> AnnData:
    """Scale each gene to unit variance and zero mean, clipping at ``max_value``, in place.

    Parameters
    ----------
    adata
        Log-normalised (or regressed-out) data.
    max_value
        Clip the scaled values at +/- this (``None``: no clipping).

    Returns
    -------
    ``adata``, changed in place (``var['mean']`` and ``var['std']`` added).
    """
    backend = dispatch(adata, "scale", on="X")
    if backend.chunked:  # row chunks kept across the workers of a distributed client
        adata.X, adata.var["mean"], adata.var["std"] = _scale_chunks(adata.X, max_value)
    else:
        backend.sc.pp.scale(adata, max_value=max_value)
    return adata


def _dtx_chunk(block, design):
    xp = xp_of(block)
    d = xp.asarray(design.astype(np.float32))
    return ((d.T @ dense(block)).astype(xp.float64),)


def _residual_chunk(block, design, beta):
    xp = xp_of(block)
    x = dense_copy(block)
    subtract_fit(x, xp.asarray(design.astype(np.float32)), xp.asarray(beta), xp)
    return x


def _regress_out_chunks(X, design: np.ndarray):
    """Residuals of every gene after the least-squares fit on ``design`` (cells x covariates)."""
    (dtx,) = sum_over_chunks(X, _dtx_chunk, design)
    return map_chunks(X, _residual_chunk, fit_coefficients(design, dtx), row_arrays=(design,))


def _moments_chunk(block):
    from ._pca import column_sum

    xp, x = xp_of(block), dense(block)
    return column_sum(x, xp), column_sum(x * x, xp)


def _scale_chunk(block, mean, std, max_value):
    xp = xp_of(block)
    x = dense_copy(block)
    x -= xp.asarray(mean)
    x /= xp.asarray(std)
    if max_value is not None:
        xp.clip(x, -max_value, max_value, out=x)
    return x


def _scale_chunks(X, max_value: float | None):
    """Each gene to zero mean and unit variance (``n - 1``), clipped at ``max_value``, as scanpy.

    Returns the scaled chunks and the genes' means and standard deviations.
    """
    n = X.shape[0]
    total, squares = sum_over_chunks(X, _moments_chunk)
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean**2, 0) * n / (n - 1))
    std[std == 0] = 1
    out = map_chunks(X, _scale_chunk, mean.astype(np.float32), std.astype(np.float32), max_value)
    return out, mean, std
