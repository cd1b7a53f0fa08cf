"""How well batches mix in a kNN graph."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._dispatch import host
from .._errors import ParameterError

if TYPE_CHECKING:
    from anndata import AnnData


def batch_mixing(
    adata: AnnData, batch_key: str | None, *, neighbors_key: str | None = None
) -> float:
    """Mean normalised batch entropy of each cell's kNN neighbourhood.

    For each cell, the entropy of the batch labels of its neighbours in the graph
    ``neighbors_key``, divided by the entropy of the batch proportions of the whole dataset:
    about 1 when batches are as mixed as they could be, 0 when every neighbourhood holds a single
    batch. Stored in ``uns['batch_mixing'][neighbors_key or 'neighbors']``.

    Parameters
    ----------
    adata
        Data with a kNN graph.
    batch_key
        Column of ``obs`` with the batches; ``None`` for data of one batch.
    neighbors_key
        The graph (``None``: ``uns['neighbors']``).

    Returns
    -------
    The score (NaN when ``batch_key`` is None: one batch, nothing to mix).
    """
    key = neighbors_key or "neighbors"
    if batch_key is None:
        adata.uns.setdefault("batch_mixing", {})[key] = float("nan")
        return float("nan")
    dist = knn_distances(adata, neighbors_key)
    if batch_key not in adata.obs:
        raise ParameterError(
            f"batch key {batch_key!r} is not a column of obs; the columns are: {', '.join(map(str, adata.obs.columns))}."
        )
    codes = adata.obs[batch_key].astype("category").cat.codes.to_numpy()
    n_b = int(codes.max()) + 1
    rows = np.repeat(np.arange(adata.n_obs), np.diff(dist.indptr))
    counts = np.zeros((adata.n_obs, n_b))
    np.add.at(counts, (rows, codes[dist.indices]), 1.0)
    counts[np.arange(adata.n_obs), codes] += 1.0  # the cell itself
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
    glob = np.bincount(codes, minlength=n_b) / codes.size
    h_max = -np.sum(glob[glob > 0] * np.log(glob[glob > 0]))
    score = float(h.mean() / h_max) if h_max > 0 else 0.0
    adata.uns.setdefault("batch_mixing", {})[key] = score
    return score


def knn_distances(adata: AnnData, neighbors_key: str | None):
    """Return the distances of the kNN graph ``neighbors_key`` as a host CSR matrix.

    Raises
    ------
    ParameterError
        There is no such graph (``pp.neighbors`` has not run).
    """
    import scipy.sparse as sp

    key = neighbors_key or "neighbors"
    if key not in adata.uns:
        raise ParameterError(f"no neighbor graph {key!r}: run pp.neighbors first.")
    return sp.csr_matrix(host(adata.obsp[adata.uns[key]["distances_key"]]))
