"""Graph clustering: Leiden and Louvain."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._dispatch import dispatch
from .._errors import ParameterError
from .._gpu import gpu_partition
from .._timing import timed

if TYPE_CHECKING:
    from anndata import AnnData


def _connectivities(adata: AnnData, neighbors_key: str | None):
    key = neighbors_key or "neighbors"
    if key not in adata.uns:
        raise ParameterError(
            f"no neighbor graph {key!r}: run pp.neighbors(adata, key_added={neighbors_key!r}) first."
        )
    return adata.obsp[adata.uns[key]["connectivities_key"]]


def _store(adata: AnnData, labels: np.ndarray, key_added: str, params: dict) -> None:
    # order clusters by size, largest first, and name them 0, 1, 2, ... as scanpy does
    labels = np.asarray(labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    rank = np.empty_like(counts)
    rank[np.argsort(-counts, kind="stable")] = np.arange(counts.size)
    new = rank[inverse]
    adata.obs[key_added] = pd.Categorical(
        new.astype(str), categories=[str(i) for i in range(counts.size)]
    )
    adata.uns[key_added] = {"params": params}


def _cluster(
    adata: AnnData,
    algorithm: str,
    *,
    resolution: float,
    neighbors_key: str | None,
    key_added: str,
    random_state: int,
) -> AnnData:
    """Run Leiden or Louvain on the kNN graph: cuGraph on the GPU, igraph on the CPU."""
    conn = _connectivities(adata, neighbors_key)
    params = {
        "resolution": resolution,
        "random_state": random_state,
        "neighbors_key": neighbors_key,
    }
    if dispatch(adata, algorithm).gpu:  # cuGraph straight from the CSR (igraph on the CPU)
        labels = gpu_partition(conn, algorithm, resolution=resolution, random_state=random_state)
    else:
        import igraph as ig

        g = _igraph(conn, ig)
        ig.set_random_number_generator(random.Random(random_state))
        if algorithm == "leiden":
            part = g.community_leiden(
                objective_function="modularity",
                weights="weight",
                resolution=resolution,
                n_iterations=-1,
            )
        else:
            part = g.community_multilevel(weights="weight", resolution=resolution)
        labels = np.asarray(part.membership)
    _store(adata, labels, key_added, params)
    return adata


@timed("leiden")
def leiden(
    adata: AnnData,
    *,
    resolution: float = 1.0,
    neighbors_key: str | None = None,
    key_added: str = "leiden",
    random_state: int = 0,
) -> AnnData:
    """Cluster the kNN graph with Leiden (cuGraph on GPU, igraph on CPU) into ``obs[key_added]``.

    Parameters
    ----------
    adata
        Data with a kNN graph.
    resolution
        Higher values give more, smaller clusters.
    neighbors_key
        The graph (``None``: ``uns['neighbors']``).
    key_added
        Column of ``obs`` for the labels (``uns[key_added]`` gets the parameters).
    random_state
        Seed.

    Returns
    -------
    ``adata`` with ``obs[key_added]``: categories ``"0"``, ``"1"``, ... from the largest cluster down.
    """
    return _cluster(
        adata, "leiden", resolution=resolution, neighbors_key=neighbors_key, key_added=key_added,
        random_state=random_state,
    )  # fmt: skip


@timed("louvain")
def louvain(
    adata: AnnData,
    *,
    resolution: float = 1.0,
    neighbors_key: str | None = None,
    key_added: str = "louvain",
    random_state: int = 0,
) -> AnnData:
    """Cluster the kNN graph with Louvain (cuGraph on GPU, igraph on CPU) into ``obs[key_added]``.

    scanpy's own ``tl.louvain`` needs the separate ``louvain`` package, and its ``igraph`` flavour
    ignores ``resolution``; the CPU path here calls igraph's multilevel method with the resolution.

    Parameters
    ----------
    adata
        Data with a kNN graph.
    resolution
        Higher values give more, smaller clusters.
    neighbors_key
        The graph (``None``: ``uns['neighbors']``).
    key_added
        Column of ``obs`` for the labels (``uns[key_added]`` gets the parameters).
    random_state
        Seed (cuGraph's Louvain takes none).

    Returns
    -------
    ``adata`` with ``obs[key_added]``: categories ``"0"``, ``"1"``, ... from the largest cluster down.
    """
    return _cluster(
        adata, "louvain", resolution=resolution, neighbors_key=neighbors_key, key_added=key_added,
        random_state=random_state,
    )  # fmt: skip


def _igraph(conn, ig):
    import scipy.sparse as sp

    upper = sp.triu(conn, k=1).tocoo()
    g = ig.Graph(n=conn.shape[0], edges=np.column_stack([upper.row, upper.col]), directed=False)
    g.es["weight"] = upper.data
    return g
