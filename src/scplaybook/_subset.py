"""Subsetting an AnnData in place with one copy of ``X``, wherever ``X`` lives.

AnnData's own subsetting of a CuPy CSR matrix goes through generic fancy indexing (measured 17 s
with an empty kernel cache at 200k cells): here GPU matrices go through :mod:`._gpu`'s gathers and
chunked matrices chunk by chunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import _chunks
from ._backend import is_gpu_array

if TYPE_CHECKING:
    from anndata import AnnData


def _own_path(X) -> bool:
    return X is not None and (is_gpu_array(X) or _chunks.is_dask(X))


def _subset(adata: AnnData, keep: np.ndarray, axis: int) -> None:
    idx = np.flatnonzero(keep)
    inplace = adata._inplace_subset_obs if axis == 0 else adata._inplace_subset_var
    X = adata.X
    if not _own_path(X):
        inplace(idx)
        return
    if _chunks.is_dask(X):
        new = _chunks.take_rows(X, keep) if axis == 0 else _chunks.take_cols(X, idx)
        # computed from now on (on the workers, with a client) while this process cuts the rest
        new = _chunks.persist_chunks(new, wait=False)
    else:
        from . import _gpu

        new = (_gpu.take_rows if axis == 0 else _gpu.take_cols)(X, idx)
    adata.X = None  # AnnData subsets the rest; X was done above
    if axis == 1 and _chunks.is_dask(X) and not adata.is_view:
        _subset_var_keeping_obs(adata, idx)
    elif axis == 0 and not adata.is_view and adata.raw is None:
        _subset_obs_directly(adata, idx)
    else:
        inplace(idx)
    adata.X = new
    if _chunks.is_dask(new):
        _chunks.wait_for(new)  # the step that subsets is the one timed for it


def _rows(v, idx: np.ndarray):
    """Rows ``idx`` of an aligned array, data frame or row-chunked (Dask) array."""
    if isinstance(v, pd.DataFrame):
        return v.iloc[idx]
    if _chunks.is_dask(v):
        keep = np.zeros(v.shape[0], dtype=bool)
        keep[idx] = True
        return _chunks.take_rows(v, keep)
    return v[idx]


def _frame_rows(df: pd.DataFrame, idx: np.ndarray, uns: dict) -> pd.DataFrame:
    """Rows ``idx`` of ``obs`` or ``var``, unused categories dropped with their colours, as AnnData does."""
    out = df.iloc[idx].copy()
    for col in out.columns:
        if not isinstance(out[col].dtype, pd.CategoricalDtype):
            continue
        before = out[col].cat.categories
        out[col] = out[col].cat.remove_unused_categories()
        colors = uns.get(f"{col}_colors")
        if colors is not None and np.ndim(colors) == 1 and len(colors) == len(before):
            uns[f"{col}_colors"] = np.asarray(colors)[np.isin(before, out[col].cat.categories)]
    return out


def _subset_obs_directly(adata: AnnData, idx: np.ndarray) -> None:
    """Keep the cells ``idx`` of an AnnData without ``X`` or ``raw``, cutting each store once.

    AnnData's in-place subset builds a view, copies it, and checks that the kept names are still
    unique (a subset of unique names is): 0.62 s for 1.3M cells on the development machine
    (0.27-0.35 s on an H200 host, 2026-11-24), against 0.14-0.21 s here (BENCHMARKS.md). A step of
    this process that the Dask workers cannot share.
    """
    uns = adata.uns
    obs = _frame_rows(adata.obs, idx, uns)
    obsm = {k: _rows(v, idx) for k, v in adata.obsm.items()}
    obsp = {k: v[idx][:, idx] for k, v in adata.obsp.items()}
    layers = {k: _rows(v, idx) for k, v in adata.layers.items()}
    adata._obs = obs  # the number of cells follows obs; the aligned stores are set anew below
    adata.obsm, adata.obsp, adata.layers = obsm, obsp, layers


def _subset_var_keeping_obs(adata: AnnData, idx: np.ndarray) -> None:
    """Keep the genes ``idx`` of an AnnData without ``X``, leaving ``obs`` as it is.

    AnnData's in-place subset builds a view of the whole object and copies it, ``obs`` included:
    0.27-0.35 s each time at 1.3M cells (measured on an H200 machine, 2026-11-24), for a subset
    that does not change ``obs``. Here only ``var`` and what is aligned with genes are cut;
    unused categories are dropped from ``var``'s columns as AnnData does.
    """
    varm = {k: _rows(v, idx) for k, v in adata.varm.items()}
    varp = {k: v[idx][:, idx] for k, v in adata.varp.items()}
    layers = {k: v[:, idx] for k, v in adata.layers.items()}
    var = _frame_rows(adata.var, idx, adata.uns)
    adata._var = var  # the number of genes follows var; the aligned stores are set anew below
    adata.varm, adata.varp, adata.layers = varm, varp, layers


def subset_obs(adata: AnnData, keep: np.ndarray) -> None:
    """Keep the cells where the boolean ``keep`` is true, in place (chunked ``X``: computed now)."""
    _subset(adata, keep, 0)


def subset_var(adata: AnnData, keep: np.ndarray) -> None:
    """Keep the genes where the boolean ``keep`` is true, in place (``raw`` is left as it is).

    Chunked ``X`` is computed now, as for :func:`subset_obs`.
    """
    _subset(adata, keep, 1)
