"""Doublet detection: Scrublet (scanpy's on the CPU; on the GPU, rapids-singlecell's algorithm here).

On the GPU, :func:`_scrublet` runs rapids-singlecell 0.18's ``pp.scrublet`` step for step (the same
random pairs from the same seed, the same gene selection, PCA and exact kNN) but keeps every step on
the GPU: rapids-singlecell copies the whole matrix, turns each sample's matrices to CSC and back
to dense, and brings every cell's neighbours to the host, where it compares them as strings (about
0.8 s per sample of 66,000 cells on the host alone). The same code runs on NumPy and SciPy
(``_Ops(gpu=False)``), which is how CI checks it against scanpy's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from .._backend import is_gpu_array
from .._dispatch import Backend, dispatch, host
from .._errors import ParameterError
from .._settings import logger
from .._subset import subset_obs
from .._timing import timed
from ._neighbors import knn_search

if TYPE_CHECKING:
    from anndata import AnnData


@timed("scrublet")
def scrublet(
    adata: AnnData,
    *,
    batch_key: str | None = None,
    expected_doublet_rate: float = 0.05,
    sim_doublet_ratio: float | Literal["auto"] = "auto",
    threshold: float | None = None,
    random_state: int = 0,
) -> AnnData:
    """Score each cell as a possible doublet with Scrublet (Wolock et al. 2019), in place.

    Scrublet adds the counts of random pairs of cells to simulate doublets, and scores each
    real cell by the share of simulated doublets among its neighbours. Run it on raw counts,
    after the QC filters, per sample (``batch_key``): doublets form within one droplet run.

    Parameters
    ----------
    adata
        Raw counts.
    batch_key
        ``obs`` column of samples, each scored on its own (``None``: all cells together).
    expected_doublet_rate
        Share of doublets expected (10x: about 0.8 % per 1,000 cells loaded).
    sim_doublet_ratio
        Doublets simulated per cell. ``"auto"``: Scrublet's default, 2, while the smallest sample
        has up to :data:`SIM_DOUBLETS` / 2 cells, falling to 1 as it grows to :data:`SIM_DOUBLETS`
        (said in the log). 1 found the planted doublets as well at 200k cells on the GPU (recall /
        precision 0.95 / 0.95 against 0.94 / 0.95) in a third of the time (8.9 s against
        24.1 s), but on the demo (about 1,900 cells per sample) recall fell from 0.91 to 0.66:
        small samples need two per cell.
    threshold
        Score above which a cell is called a doublet (``None``: Scrublet's own, from the valley
        of the simulated doublets' score histogram).
    random_state
        Seed.

    Returns
    -------
    ``adata`` with ``obs['doublet_score']``, ``obs['predicted_doublet']`` and ``uns['scrublet']``
    (scanpy's keys). Data in row chunks, and samples of fewer than :data:`MIN_SAMPLE_CELLS` cells,
    are left unscored (NaN, not called; logged).
    """
    backend = dispatch(adata, "scrublet", on="X")
    if backend.chunked:
        logger.info(
            "    scrublet skipped: X is in row chunks, and Scrublet needs the cells in one matrix "
            "(score each sample's file on its own)"
        )
        return adata
    if batch_key is not None and batch_key not in adata.obs:
        raise ParameterError(f"batch_key={batch_key!r} is not a column of obs.")
    scored = _scorable(adata, batch_key)
    if not scored.any():
        adata.obs["doublet_score"] = np.nan
        adata.obs["predicted_doublet"] = False
        return adata
    # the cells of the samples scored, on their own when a sample is left out
    target = adata if scored.all() else _cells(adata, scored, batch_key)
    if sim_doublet_ratio == "auto":
        sim_doublet_ratio = _auto_ratio(target, batch_key)
    if backend.gpu:  # rapids-singlecell's algorithm, without its host round trips (see _scores)
        _scrublet(
            target,
            _Ops(gpu=True),
            batch_key=batch_key,
            expected_doublet_rate=expected_doublet_rate,
            sim_doublet_ratio=sim_doublet_ratio,
            threshold=threshold,
            random_state=random_state,
        )
    else:
        # each sample's cells and their simulated doublets are searched together: exactly (as on
        # the GPU) up to EXACT_KNN_MAX of them
        largest = target.obs[batch_key].value_counts().max() if batch_key else target.n_obs
        backend.sc.pp.scrublet(
            target,
            batch_key=batch_key,
            expected_doublet_rate=expected_doublet_rate,
            sim_doublet_ratio=sim_doublet_ratio,
            threshold=threshold,
            use_approx_neighbors=(
                False if knn_search(int(largest * (1 + sim_doublet_ratio))) else None
            ),
            verbose=False,
            random_state=random_state,
        )
    if target is not adata:
        score = np.full(adata.n_obs, np.nan)
        score[scored] = np.asarray(host(target.obs["doublet_score"].to_numpy()), dtype=float)
        called = np.zeros(adata.n_obs, dtype=bool)
        called[scored] = target.obs["predicted_doublet"].fillna(False).to_numpy(dtype=bool)
        adata.obs["doublet_score"], adata.obs["predicted_doublet"] = score, called
        adata.uns["scrublet"] = target.uns["scrublet"]
    adata.uns["scrublet"] = _to_host(adata.uns.get("scrublet", {}))  # nested per batch
    for col in ("doublet_score", "predicted_doublet"):  # host columns on both backends
        adata.obs[col] = np.asarray(host(adata.obs[col].to_numpy()))
    # no threshold found (a score histogram without two modes): no cell is called
    adata.obs["predicted_doublet"] = adata.obs["predicted_doublet"].fillna(False).astype(bool)
    n = int(adata.obs["predicted_doublet"].sum())
    logger.info(
        f"    {n} of {adata.n_obs} cells ({n / max(adata.n_obs, 1):.1%}) predicted doublets"
    )
    return adata


MIN_SAMPLE_CELLS = 100
"""Samples with fewer cells are not scored: too few to simulate doublets from (Scrublet's PCA of
30 components fails below 31 cells on both backends)."""


def _scorable(adata: AnnData, batch_key: str | None) -> np.ndarray:
    """Return which cells Scrublet scores: those of samples of at least ``MIN_SAMPLE_CELLS``; say which not."""
    if batch_key is None:
        sizes = pd.Series({"all cells": adata.n_obs})
        labels = np.full(adata.n_obs, "all cells", dtype=object)
    else:
        sizes = adata.obs[batch_key].value_counts()
        labels = adata.obs[batch_key].to_numpy()
    small = sizes[(sizes > 0) & (sizes < MIN_SAMPLE_CELLS)]
    if len(small):
        listed = ", ".join(f"{k} ({v} cells)" for k, v in small.items())
        logger.warning(
            f"    not scored for doublets (fewer than {MIN_SAMPLE_CELLS} cells, too few to simulate "
            f"doublets from): {listed}; their doublet_score is NaN and none is called"
        )
    return ~pd.Series(labels).isin(small.index).to_numpy()


def _cells(adata: AnnData, keep: np.ndarray, batch_key: str | None) -> AnnData:
    """Return a new AnnData of the counts of the cells ``keep`` (and ``obs[batch_key]``), wherever X lives."""
    from anndata import AnnData as _AnnData

    rows = np.flatnonzero(keep)
    if is_gpu_array(adata.X) and hasattr(adata.X, "indptr"):
        from .. import _gpu

        X = _gpu.take_rows(adata.X, rows)
    else:
        X = adata.X[rows]
    obs = adata.obs.iloc[rows][[batch_key]] if batch_key else adata.obs.iloc[rows][[]]
    return _AnnData(X=X, obs=obs)


SIM_DOUBLETS = 50_000
"""Simulated doublets per sample above which ``sim_doublet_ratio="auto"`` simulates fewer per cell."""


def _auto_ratio(adata: AnnData, batch_key: str | None) -> float:
    """Return 2 for samples up to ``SIM_DOUBLETS / 2`` cells, down to 1 at ``SIM_DOUBLETS`` and beyond."""
    sizes = adata.obs[batch_key].value_counts() if batch_key is not None else None
    smallest = int(sizes[sizes > 0].min()) if sizes is not None else adata.n_obs
    ratio = float(np.clip(SIM_DOUBLETS / max(smallest, 1), 1.0, 2.0))
    logger.info(
        f"    sim_doublet_ratio='auto': {ratio:.2f} simulated doublets per cell (smallest sample: "
        f"{smallest:,} cells)"
    )
    return ratio


def _to_host(v):
    """``uns['scrublet']`` with its CuPy arrays (one dict per batch, nested) as NumPy."""
    if isinstance(v, dict):
        return {k: _to_host(x) for k, x in v.items()}
    return host(v)


@timed("filter doublets")
def filter_doublets(adata: AnnData) -> AnnData:
    """Remove the cells :func:`scrublet` called doublets, in place.

    Returns
    -------
    ``adata`` without them; ``uns['filter_doublets']`` has the counts before and after and the
    names of the cells removed.
    """
    if "predicted_doublet" not in adata.obs:
        logger.info("    no doublet calls (scrublet did not run): no cell removed")
        return adata
    keep = ~adata.obs["predicted_doublet"].to_numpy(dtype=bool)
    dispatch(adata, "filter_doublets", on="X")
    adata.uns["filter_doublets"] = {
        "n_before": adata.n_obs,
        "n_after": int(keep.sum()),
        "removed": adata.obs_names[~keep].to_numpy(dtype=str),
    }
    logger.info(f"    removed {int((~keep).sum())} predicted doublets of {adata.n_obs} cells")
    subset_obs(adata, keep)
    return adata


def _gpu_csr(X):
    """``X`` as a CuPy CSR matrix (float32 values)."""
    import cupyx.scipy.sparse as csp

    return X.tocsr() if csp.issparse(X) else csp.csr_matrix(X.astype(np.float32, copy=False))


def _host_csr(X):
    """``X`` as a SciPy CSR matrix."""
    import scipy.sparse as sp

    return X.tocsr() if sp.issparse(X) else sp.csr_matrix(np.asarray(X, dtype=np.float32))


def _host_cells_per_gene(X) -> np.ndarray:
    """Count, for each column of a SciPy CSR matrix, the rows with a positive value (as ``_gpu``'s)."""
    return np.bincount(X.indices[X.data > 0], minlength=X.shape[1])


def _scale_rows(X, scale) -> None:
    """Multiply each row of a SciPy CSR matrix by its factor in ``scale``, in place."""
    X.data *= np.repeat(np.asarray(scale, dtype=X.data.dtype), np.diff(X.indptr))


class _Ops:
    """The array operations :func:`_scrublet` needs, on the GPU (CuPy, cuML) or the host (SciPy, scikit-learn)."""

    def __init__(self, *, gpu: bool):
        self.gpu = gpu
        if gpu:
            import cupy as cp

            from .. import _gpu

            self.xp = cp
            self.take_rows, self.take_cols = _gpu.take_rows, _gpu.take_cols
            self.cells_per_gene = _gpu.cells_per_gene
            self.csr = _gpu_csr
            self.dense, self.row_sums, self.scale_rows = (
                _gpu.to_dense,
                _gpu.row_sums,
                _gpu.scale_rows,
            )
        else:
            self.xp = np
            self.csr = _host_csr
            self.take_rows = lambda X, rows: X[rows]
            self.cells_per_gene = _host_cells_per_gene
            self.take_cols = lambda X, cols: X[:, cols]
            self.dense = lambda X: np.asarray(X.toarray(), dtype=np.float32)
            self.row_sums = lambda X: np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
            self.scale_rows = _scale_rows

    @property
    def sc(self):
        """The library that selects the genes: ``rapids_singlecell`` or ``scanpy``."""
        return Backend("gpu" if self.gpu else "cpu").sc

    def pca(self, obs, sim, n_comps: int, random_state: int):
        """Fit a PCA to ``obs``; return both embedded (rapids-singlecell: cuML; scanpy: ARPACK)."""
        if self.gpu:
            from cuml.decomposition import PCA

            pca = PCA(n_components=n_comps, output_type="cupy").fit(obs)
        else:
            from sklearn.decomposition import PCA

            pca = PCA(n_components=n_comps, svd_solver="arpack", random_state=random_state)
            pca = pca.fit(obs)
        return pca.transform(obs), pca.transform(sim)

    def knn(self, X, k: int):
        """Return the indices of each row's ``k`` nearest rows of ``X`` (exact, itself first)."""
        if self.gpu:
            from cuml.neighbors import NearestNeighbors

            nn = NearestNeighbors(n_neighbors=k, metric="euclidean", output_type="cupy")
        else:
            from sklearn.neighbors import NearestNeighbors

            nn = NearestNeighbors(n_neighbors=k, metric="euclidean")
        return nn.fit(X).kneighbors(X, return_distance=False)


def _scrublet(
    adata: AnnData,
    ops: _Ops,
    *,
    batch_key: str | None,
    expected_doublet_rate: float,
    sim_doublet_ratio: float,
    threshold: float | None,
    random_state: int,
    n_prin_comps: int = 30,
) -> None:
    """Scrublet per sample, as rapids-singlecell 0.18 runs it (random pairs from ``rng.spawn``).

    Writes scanpy's keys: ``obs['doublet_score']``, ``obs['predicted_doublet']`` and
    ``uns['scrublet']`` (per sample under ``'batches'`` with ``batch_key``).
    """
    rng = np.random.default_rng(random_state)
    n = adata.n_obs
    X = ops.csr(adata.X)  # a dense matrix (some GEO files) as CSR, as Scrublet keeps it
    if batch_key is None:
        parts = [(None, np.arange(n), rng)]
    else:  # rapids-singlecell's order: the sorted samples, one spawned generator each
        labels = adata.obs[batch_key].to_numpy()
        batches = np.unique(adata.obs[batch_key])
        parts = [(b, np.flatnonzero(labels == b), r) for b, r in zip(batches, rng.spawn(len(batches)), strict=True)]  # fmt: skip
    score = np.full(n, np.nan)
    called = np.zeros(n, dtype=bool)
    found = {}
    for batch, rows, sub_rng in parts:
        kept, obs_score, uns = _scores(
            ops.take_rows(X, rows) if batch is not None else X,
            ops,
            rng=sub_rng,
            sim_doublet_ratio=sim_doublet_ratio,
            expected_doublet_rate=expected_doublet_rate,
            n_prin_comps=n_prin_comps,
            random_state=random_state,
        )
        score[rows[kept]] = obs_score
        thr = threshold if threshold is not None else _valley(uns["doublet_scores_sim"])
        if thr is not None:
            uns["threshold"] = thr
            called[rows[kept]] = obs_score > thr
        found[batch] = uns
    adata.obs["doublet_score"] = score
    adata.obs["predicted_doublet"] = called
    if batch_key is None:
        adata.uns["scrublet"] = found[None]
    else:
        adata.uns["scrublet"] = {"batches": found, "batched_by": batch_key}


def _scores(X, ops: _Ops, *, rng, sim_doublet_ratio, expected_doublet_rate, n_prin_comps,
            random_state):  # fmt: skip
    """One sample's Scrublet scores: (kept cells' positions, their scores, the sample's ``uns``)."""
    from anndata import AnnData

    xp = ops.xp

    # rapids-singlecell: filter_genes(min_cells=3), then filter_cells(min_genes=3)
    def positive(m):  # 1 where a count is above zero
        return type(m)(((m.data > 0).astype(np.float32), m.indices, m.indptr), shape=m.shape)

    X = ops.take_cols(X, np.flatnonzero(ops.cells_per_gene(X) >= 3))
    kept = np.flatnonzero(host(ops.row_sums(positive(X)) >= 3))
    if kept.size < X.shape[0]:
        X = ops.take_rows(X, xp.asarray(kept))
    # the genes: Seurat's dispersion on log1p of counts normalised to the median total
    totals = ops.row_sums(X)
    target = xp.median(totals[totals > 0])
    logged = X.copy()
    ops.scale_rows(logged, xp.where(totals > 0, target / xp.where(totals > 0, totals, 1), 0))
    logged.data = xp.log1p(logged.data)
    genes = AnnData(logged)
    ops.sc.pp.highly_variable_genes(genes, flavor="seurat")
    hvg = np.flatnonzero(genes.var["highly_variable"].to_numpy())
    del logged, genes
    obs = ops.dense(ops.take_cols(X, xp.asarray(hvg)))
    # simulated doublets: the counts of two observed cells added
    n = obs.shape[0]
    n_sim = int(n * sim_doublet_ratio)
    pairs = np.vstack(np.unravel_index(rng.choice(n * n, size=n_sim, replace=False), (n, n))).T
    p = xp.asarray(pairs)
    sim = obs[p[:, 0]] + obs[p[:, 1]]
    # each normalised to a million counts, then z-scored with the observed cells' gene statistics
    for m in (obs, sim):
        t = m.sum(axis=1, dtype=np.float64)
        m *= xp.where(t > 0, 1e6 / xp.where(t > 0, t, 1), 0).astype(np.float32)[:, None]
    mean = obs.mean(axis=0, dtype=np.float64)
    std = xp.sqrt(obs.var(axis=0, ddof=1, dtype=np.float64))
    std[std == 0] = 1
    for m in (obs, sim):
        m -= mean.astype(np.float32)
        m /= std.astype(np.float32)
    emb_obs, emb_sim = ops.pca(obs, sim, n_prin_comps, random_state)
    del obs, sim
    # the share of simulated doublets among each cell's neighbours
    k = int(round(0.5 * np.sqrt(n)))
    k_adj = int(round(k * (1 + n_sim / float(n))))
    neighbours = ops.knn(xp.vstack([emb_obs, emb_sim]), k_adj)[:, 1:]  # itself first
    nd = host((neighbours >= n).sum(axis=1)).astype(np.float64)
    rho, r, big_n = expected_doublet_rate, n_sim / float(n), float(k_adj)
    q = (nd + 1) / (big_n + 2)
    ld = q * rho / r / (1 - rho - q * (1 - rho - rho / r))
    uns = {
        "doublet_scores_sim": ld[n:],
        "doublet_parents": pairs,
        "parameters": {
            "expected_doublet_rate": expected_doublet_rate,
            "sim_doublet_ratio": sim_doublet_ratio,
            "n_neighbors": k,
        },
    }
    return kept, ld[:n], uns


def _valley(sim_scores: np.ndarray) -> float | None:
    """Scrublet's automatic threshold: the minimum between the two modes of the simulated scores."""
    from skimage.filters import threshold_minimum

    try:
        return float(threshold_minimum(sim_scores))
    except Exception:  # noqa: BLE001 - no two modes: no threshold, as in Scrublet
        return None
