"""Two-dimensional embeddings: UMAP and t-SNE."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from .._dispatch import dispatch, host, results_to_host
from .._errors import ParameterError, check_obsm_key
from .._timing import timed

if TYPE_CHECKING:
    from anndata import AnnData

FFT_FROM_CELLS = 10_000  # "auto" t-SNE on the GPU: FFT interpolation from this many cells on


@timed("umap")
def umap(
    adata: AnnData,
    *,
    neighbors_key: str | None = None,
    key_added: str = "X_umap",
    min_dist: float = 0.5,
    init_pos: str = "pca",
    random_state: int = 0,
) -> AnnData:
    """Embed the kNN graph ``neighbors_key`` with UMAP into ``obsm[key_added]``.

    The layout starts by default from the first two principal components of the representation
    the graph was built on (``init_pos="pca"``, umap-learn's ``init="pca"``: scaled to a largest
    coordinate of 10, with noise of 1e-4), the same array on both backends. scanpy's and
    rapids-singlecell's default start is the graph's spectral embedding; on the GPU, cuML's layout
    from it took 1.3 and 2.8 s for the notebook's two graphs of 180,904 cells against 0.29 s from
    the PCA start, with the same share of each cell's 15 nearest cells in 2-D of its own cell type
    (0.984-0.988; H200, 2026-12-03, ``benchmarks/profile_notebook.py --umap``). Starting from
    principal components also keeps the clusters' global arrangement (Kobak & Linderman 2021,
    Nature Biotechnology 39:156).

    Parameters
    ----------
    adata
        Data with a kNN graph.
    neighbors_key
        The graph (``None``: ``uns['neighbors']``).
    key_added
        Key of ``obsm`` for the embedding.
    min_dist
        How tightly points may pack (smaller: tighter clusters).
    init_pos
        Where the layout starts: ``"pca"`` (above), ``"spectral"`` (scanpy's default),
        ``"random"``, ``"paga"`` (the groups where :func:`scplaybook.pl.paga` placed them, after
        :func:`scplaybook.tl.paga`), or a key of ``obsm`` with two columns.
    random_state
        Seed.

    Returns
    -------
    ``adata`` with ``obsm[key_added]`` (host NumPy array); the start is in
    ``uns[...]['params']['init_pos']`` (``uns['umap']`` for ``key_added="X_umap"``).
    """
    key = neighbors_key or "neighbors"
    if key not in adata.uns:
        raise ParameterError(f"no neighbor graph {key!r}: run pp.neighbors first.")
    start = _start(adata, key, init_pos, random_state)
    kw = {
        "neighbors_key": neighbors_key,
        "key_added": None if key_added == "X_umap" else key_added,  # scanpy's uns['umap']
        "min_dist": min_dist,
        "init_pos": start,
        "random_state": random_state,
    }
    dispatch(adata, "umap").sc.tl.umap(adata, **kw)
    results_to_host(adata, obsm=[key_added])
    adata.uns["umap" if key_added == "X_umap" else key_added]["params"]["init_pos"] = init_pos
    return adata


def _start(adata: AnnData, key: str, init_pos: str, random_state: int):
    """UMAP's starting layout: ``init_pos`` as scanpy takes it, or the PCA start as an array."""
    if init_pos == "paga" and "pos" not in adata.uns.get("paga", {}):
        raise ParameterError(
            "init_pos='paga' starts from the groups' positions in uns['paga']['pos']: run "
            "scp.tl.paga(adata, groups=...) and scp.pl.paga(adata, basis=...) first."
        )
    if init_pos in ("spectral", "random", "paga"):
        return init_pos
    if init_pos != "pca":
        if init_pos not in adata.obsm or np.shape(adata.obsm[init_pos])[1:] != (2,):
            raise ParameterError(
                f"init_pos={init_pos!r}: use 'pca', 'spectral', 'random', 'paga' or a key of obsm "
                f"with two columns (obsm has: {', '.join(adata.obsm) or 'nothing'})."
            )
        return init_pos
    rep = adata.uns[key].get("params", {}).get("use_rep") or "X_pca"
    if rep not in adata.obsm:
        raise ParameterError(
            f"init_pos='pca' starts from obsm[{rep!r}], the representation of the graph {key!r}, "
            "which is not there: run pp.pca (and pp.neighbors) again, or use init_pos='spectral'."
        )
    pcs = np.asarray(host(adata.obsm[rep][:, :2]), dtype=np.float64)
    pcs = pcs - pcs.mean(axis=0)
    pcs *= 10 / max(np.abs(pcs).max(), np.finfo(np.float32).tiny)
    noise = np.random.default_rng(random_state).normal(scale=1e-4, size=pcs.shape)
    return (pcs + noise).astype(np.float32)


@timed("t-SNE")
def tsne(
    adata: AnnData,
    *,
    use_rep: str = "X_pca_harmony",
    n_pcs: int | None = 40,
    perplexity: float = 30,
    early_exaggeration: float = 12,
    learning_rate: float = 200,
    method: Literal["auto", "barnes_hut", "fft"] = "auto",
    key_added: str = "X_tsne",
    random_state: int = 0,
) -> AnnData:
    """Embed ``obsm[use_rep]`` with t-SNE into ``obsm[key_added]``.

    The neighbour graph behind it has ``int(3 * perplexity + 1)`` neighbours on both backends
    (scikit-learn's rule; cuML's TSNE is given the same number); the number used is in
    ``uns['tsne']['params']['n_neighbors']``. cuML 26.10 may still log "# of Nearest Neighbors
    should be at least 3 * perplexity" (seen with 91 neighbours at perplexity 30).

    ``method`` is how the repulsive forces are approximated. ``"auto"`` takes the FFT-accelerated
    interpolation (FIt-SNE, cuML's default) on the GPU from 10,000 cells on, and Barnes-Hut below
    that and on the CPU (scikit-learn has no FFT method); the choice is in
    ``uns['tsne']['params']['method']``.

    Parameters
    ----------
    adata
        Data with the embedding ``use_rep``.
    use_rep
        Key of ``obsm`` to embed.
    n_pcs
        Columns of it to use (``None``: all).
    perplexity
        Effective number of neighbours.
    early_exaggeration
        Attraction of the first iterations (how tight clusters start).
    learning_rate
        Step size of the optimisation.
    method
        ``"auto"``, ``"barnes_hut"`` or ``"fft"`` (GPU only), as above.
    key_added
        Key of ``obsm`` for the embedding.
    random_state
        Seed.

    Returns
    -------
    ``adata`` with ``obsm[key_added]`` (float32) and ``uns['tsne']``.
    """
    if method not in ("auto", "barnes_hut", "fft"):
        raise ParameterError(f"method={method!r}: use 'auto', 'barnes_hut' or 'fft'.")
    check_obsm_key(adata, use_rep, arg="use_rep")
    n_neighbors = int(3 * perplexity + 1)
    if n_neighbors >= adata.n_obs:
        raise ParameterError(
            f"perplexity={perplexity} needs more than {n_neighbors} cells (3 x perplexity + 1); "
            f"there are {adata.n_obs}. Lower the perplexity."
        )
    X = np.asarray(adata.obsm[use_rep])[:, :n_pcs] if n_pcs else np.asarray(adata.obsm[use_rep])
    if dispatch(adata, "tsne").gpu:
        import rapids_singlecell  # noqa: F401 - loads the RAPIDS stack (and its library paths)
        from cuml.manifold import TSNE

        if method == "auto":
            method = "fft" if adata.n_obs >= FFT_FROM_CELLS else "barnes_hut"
        emb = TSNE(
            n_neighbors=n_neighbors, perplexity=perplexity, early_exaggeration=early_exaggeration,
            learning_rate=learning_rate, random_state=random_state, method=method,
        ).fit_transform(X.astype(np.float32))  # fmt: skip
        emb = emb.get() if hasattr(emb, "get") else np.asarray(emb)
    else:
        from sklearn.manifold import TSNE

        if method == "fft":
            raise ParameterError(
                "method='fft' needs the GPU (cuML); scikit-learn on the CPU has Barnes-Hut only: "
                "use method='auto' or 'barnes_hut'."
            )
        method = "barnes_hut"
        emb = TSNE(
            perplexity=perplexity, early_exaggeration=early_exaggeration, learning_rate=learning_rate,
            random_state=random_state, n_jobs=-1, init="random",
        ).fit_transform(X)  # fmt: skip
    adata.obsm[key_added] = np.asarray(emb, dtype=np.float32)
    adata.uns["tsne"] = {
        "params": {
            "perplexity": perplexity, "early_exaggeration": early_exaggeration,
            "learning_rate": learning_rate, "use_rep": use_rep, "n_pcs": n_pcs, "n_neighbors": n_neighbors,
            "method": method,
        }
    }  # fmt: skip
    return adata
