"""The k-nearest-neighbour graph."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._dispatch import dispatch
from .._errors import ParameterError, check_obsm_key
from .._timing import timed

if TYPE_CHECKING:
    from anndata import AnnData

EXACT_KNN_MAX = 60_000
"""Up to this many points the CPU searches neighbours exactly (brute force, as the GPU does).

scanpy switches to pynndescent's approximate search at 8,192 cells; pynndescent compiles its search
with numba in every new process, uncached (its distance functions are arguments): 60-120 s on a
2-core machine, before it searches. The exact search of 50,000 points x 30 dimensions, 120 neighbours
each, took 9.5 s there. Above this size pynndescent (scanpy's choice) runs.
"""


def knn_search(n_points: int) -> str | None:
    """Return the kNN search for ``n_points`` on the CPU: ``"sklearn"`` (exact) or ``None`` (scanpy's)."""
    return "sklearn" if n_points <= EXACT_KNN_MAX else None


@timed("neighbors")
def neighbors(
    adata: AnnData,
    *,
    n_neighbors: int = 15,
    n_pcs: int | None = 40,
    use_rep: str = "X_pca",
    key_added: str | None = None,
    random_state: int = 0,
) -> AnnData:
    """Build the kNN graph on ``obsm[use_rep]`` (first ``n_pcs`` columns).

    The graph goes to ``obsp['connectivities']``/``obsp['distances']`` and ``uns['neighbors']``,
    or to ``obsp['{key_added}_connectivities']`` and ``uns[key_added]``, as in scanpy.

    Parameters
    ----------
    adata
        Data with the embedding ``use_rep``.
    n_neighbors
        Neighbours of each cell, the cell included (as in scanpy).
    n_pcs
        Columns of ``obsm[use_rep]`` to use (``None``: all).
    use_rep
        Key of ``obsm`` to build the graph on.
    key_added
        Name of the graph (``None``: scanpy's default keys).
    random_state
        Seed (the exact search, on the GPU and up to :data:`EXACT_KNN_MAX` cells on the CPU,
        ignores it).

    Returns
    -------
    ``adata`` with the graph in ``obsp`` and its parameters in ``uns``.
    """
    check_obsm_key(adata, use_rep, arg="use_rep")
    if n_neighbors >= adata.n_obs:
        raise ParameterError(
            f"n_neighbors={n_neighbors} needs more than {adata.n_obs} cells: lower it."
        )
    if n_pcs is not None and n_pcs > adata.obsm[use_rep].shape[1]:
        raise ParameterError(
            f"n_pcs={n_pcs} is more than the {adata.obsm[use_rep].shape[1]} columns of {use_rep}."
        )
    kw = {"n_neighbors": n_neighbors, "n_pcs": n_pcs, "use_rep": use_rep, "key_added": key_added}
    backend = dispatch(adata, "neighbors")
    if not backend.gpu:  # exact, as on the GPU, unless too many cells (see EXACT_KNN_MAX)
        kw["transformer"] = knn_search(adata.n_obs)
    backend.sc.pp.neighbors(adata, random_state=random_state, **kw)
    return adata
