"""Quality-control metrics and cell/gene filters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from .._backend import is_gpu_array
from .._chunks import (
    add_parts,
    compute_rows,
    distributed_client,
    host_array,
    is_dask,
    row_blocks,
    run_totals,
    sum_over_chunks,
    xp_of,
)  # fmt: skip
from .._dispatch import dispatch
from .._errors import ParameterError
from .._settings import logger
from .._subset import subset_obs, subset_var
from .._timing import timed

if TYPE_CHECKING:
    from anndata import AnnData

RIBO_PREFIXES = ("RPS", "RPL", "Rps", "Rpl")


def detect_mito_prefix(adata: AnnData) -> str | None:
    """Return the mitochondrial gene prefix of ``adata``: ``"MT-"`` (human) or ``"mt-"`` (mouse).

    Returns
    -------
    ``"MT-"``, ``"mt-"``, or ``None`` when no gene name has either prefix.
    """
    names = adata.var_names.astype(str)
    for prefix in ("MT-", "mt-", "Mt-"):
        if names.str.startswith(prefix).any():
            return prefix
    return None


@timed("QC metrics")
def calculate_qc_metrics(
    adata: AnnData,
    *,
    mito_prefix: str | None = "auto",
    ribo_prefixes: tuple[str, ...] = RIBO_PREFIXES,
) -> AnnData:
    """Flag mitochondrial and ribosomal genes and compute per-cell and per-gene QC metrics.

    Parameters
    ----------
    adata
        Raw counts.
    mito_prefix
        Prefix of mitochondrial genes; ``"auto"`` recognises human ``MT-`` and mouse ``mt-``.
    ribo_prefixes
        Prefixes of ribosomal protein genes.

    Returns
    -------
    ``adata``, with ``var['mt']``, ``var['ribo']`` and ``obs`` columns ``n_genes_by_counts``,
    ``total_counts``, ``pct_counts_mt``, ``pct_counts_ribo`` (as scanpy names them).
    """
    prefix = detect_mito_prefix(adata) if mito_prefix == "auto" else mito_prefix
    names = adata.var_names.astype(str)
    adata.var["mt"] = names.str.startswith(prefix) if prefix else np.zeros(adata.n_vars, bool)
    adata.var["ribo"] = names.str.startswith(tuple(ribo_prefixes))
    if prefix is None:
        logger.warning(
            "no mitochondrial genes found (no MT- or mt- prefix): pct_counts_mt will be 0."
        )
    adata.uns["qc"] = {"mito_prefix": prefix, "n_mt_genes": int(adata.var["mt"].sum())}
    backend = dispatch(adata, "calculate_qc_metrics", on="X")
    if backend.chunked:
        _qc_in_chunks(adata, ("mt", "ribo"))
    elif backend.gpu:
        backend.sc.pp.calculate_qc_metrics(adata, qc_vars=["mt", "ribo"], log1p=False)
    else:  # scanpy's signature has percent_top and inplace; rapids-singlecell's has not
        backend.sc.pp.calculate_qc_metrics(
            adata, qc_vars=["mt", "ribo"], percent_top=None, log1p=False, inplace=True
        )
    return adata


def _qc_in_chunks(adata: AnnData, qc_vars: tuple[str, ...]) -> None:
    """Scanpy's QC metrics (the same columns and dtypes) for chunked ``X``, in one pass.

    With a distributed client, a matrix still on disk is first read onto the workers, each its own
    run of chunks; the chunks stay there for the steps that follow.
    """
    from .._chunks import rows_to_dask, source_of

    if source_of(adata.X) is not None and distributed_client() is not None:
        adata.X = rows_to_dask(adata.X, 0, spread=True)
    sets = np.column_stack([adata.var[k].to_numpy(dtype=bool) for k in qc_vars])
    cells, detected, gene_counts = qc_sums(adata.X, sets)
    n = adata.n_obs
    adata.var["n_cells_by_counts"] = detected.astype(np.int64)
    adata.var["mean_counts"] = (gene_counts / n).astype(np.float32)
    adata.var["pct_dropout_by_counts"] = (1 - detected / n) * 100
    adata.var["total_counts"] = gene_counts.astype(np.float32)
    total = cells[:, 0]
    adata.obs["n_genes_by_counts"] = cells[:, 1].astype(np.int32)
    adata.obs["total_counts"] = total.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):  # cells without counts: NaN, as scanpy
        for i, k in enumerate(qc_vars):
            adata.obs[f"total_counts_{k}"] = cells[:, 2 + i].astype(np.float32)
            adata.obs[f"pct_counts_{k}"] = (cells[:, 2 + i] / total * 100).astype(np.float32)


#: Smallest spread the MAD cut-offs use: log1p units for counts and genes (about 10 %), percentage
#: points for pct_counts_mt. Where most cells have no mitochondrial reads the MAD is 0, and a bare
#: median + n_mads x MAD would remove every cell with a single one (531 of 700 real PBMCs kept).
MAD_FLOOR = {"log": 0.1, "pct": 1.0}


def _mad_bounds(x: np.ndarray, n_mads: float, floor: float) -> tuple[float, float]:
    med = float(np.median(x))
    mad = max(float(np.median(np.abs(x - med))) * 1.4826, floor)
    return med - n_mads * mad, med + n_mads * mad


@timed("filter cells")
def filter_cells(
    adata: AnnData,
    *,
    min_genes: int | None = 200,
    max_genes: int | None = 5000,
    max_pct_mt: float | None = 20.0,
    method: Literal["fixed", "mad"] = "fixed",
    n_mads: float = 5.0,
) -> AnnData:
    """Remove low-quality cells in place, with one mask and one copy.

    Parameters
    ----------
    adata
        Data with QC metrics (see :func:`calculate_qc_metrics`).
    min_genes, max_genes
        Keep cells with ``min_genes <= n_genes_by_counts < max_genes`` (``method="fixed"``).
    max_pct_mt
        Keep cells with ``pct_counts_mt < max_pct_mt`` (``method="fixed"``).
    method
        ``"fixed"``: the cut-offs above (the original playbook's are the defaults).
        ``"mad"``: data-driven, median ± ``n_mads`` median absolute deviations of log counts
        and log genes, and median + ``n_mads`` MADs of ``pct_counts_mt``.
    n_mads
        Width of the MAD window.

    Returns
    -------
    ``adata``, subset in place; the thresholds used and the counts kept are in
    ``uns['filter_cells']``.
    """
    for col in ("n_genes_by_counts", "total_counts", "pct_counts_mt"):
        if col not in adata.obs:
            raise ParameterError(
                f"filter_cells needs obs[{col!r}]: run pp.calculate_qc_metrics first."
            )
    obs = adata.obs
    n_genes = obs["n_genes_by_counts"].to_numpy(dtype=float)
    # cells without counts have no mitochondrial share (NaN, as scanpy): 0 here; they go anyway
    pct_mt = np.nan_to_num(obs["pct_counts_mt"].to_numpy(dtype=float), nan=0.0)
    if method == "fixed":
        lo_g = -np.inf if min_genes is None else min_genes
        hi_g = np.inf if max_genes is None else max_genes
        hi_mt = np.inf if max_pct_mt is None else max_pct_mt
        mask = (n_genes >= lo_g) & (n_genes < hi_g) & (pct_mt < hi_mt)
        used = {"min_genes": min_genes, "max_genes": max_genes, "max_pct_mt": max_pct_mt}
    elif method == "mad":
        lg = np.log1p(n_genes)
        lc = np.log1p(obs["total_counts"].to_numpy(dtype=float))
        some = n_genes > 0  # barcodes without a count do not set the cut-offs; they are removed
        g_lo, g_hi = _mad_bounds(lg[some], n_mads, MAD_FLOOR["log"])
        c_lo, c_hi = _mad_bounds(lc[some], n_mads, MAD_FLOOR["log"])
        _, mt_hi = _mad_bounds(pct_mt[some], n_mads, MAD_FLOOR["pct"])
        mask = some & (lg >= g_lo) & (lg <= g_hi) & (lc >= c_lo) & (lc <= c_hi) & (pct_mt <= mt_hi)
        used = {
            "min_genes": float(np.expm1(g_lo)),
            "max_genes": float(np.expm1(g_hi)),
            "min_counts": float(np.expm1(c_lo)),
            "max_counts": float(np.expm1(c_hi)),
            "max_pct_mt": float(mt_hi),
            "n_mads": n_mads,
        }
    else:
        raise ParameterError(f"method={method!r} is not known: use 'fixed' or 'mad'.")
    n_keep = int(mask.sum())
    if n_keep == 0:
        raise ParameterError(
            f"filter_cells with {used} removes every one of the {adata.n_obs} cells. "
            f"Loosen the thresholds: n_genes_by_counts ranges {n_genes.min():.0f}-{n_genes.max():.0f}, "
            f"pct_counts_mt {pct_mt.min():.1f}-{pct_mt.max():.1f}."
        )
    if n_keep < 0.1 * adata.n_obs:  # a raw droplet matrix loses most barcodes; a gene panel too
        logger.warning(
            f"filter_cells keeps only {n_keep} of {adata.n_obs} cells ({used}). If these are cells "
            f"and not empty droplets, loosen the thresholds: n_genes_by_counts has median "
            f"{np.median(n_genes):.0f} (range {n_genes.min():.0f}-{n_genes.max():.0f}); a gene panel "
            "or shallow sequencing needs a lower min_genes, or qc_method='mad'."
        )
    dispatch(adata, "filter_cells", on="X")  # the backend for the timing table; checks X
    adata.uns["filter_cells"] = {
        "method": method,
        **used,
        "n_before": adata.n_obs,
        "n_after": n_keep,
    }
    logger.info(f"    kept {n_keep} of {adata.n_obs} cells")
    subset_obs(adata, mask)  # chunked X: computed here
    return adata


@timed("filter genes")
def filter_genes(adata: AnnData, *, min_cells: int = 3) -> AnnData:
    """Remove genes detected in fewer than ``min_cells`` cells, in place.

    Parameters
    ----------
    adata
        Counts with QC metrics.
    min_cells
        Keep genes detected (count > 0) in at least this many cells.

    Returns
    -------
    ``adata``, subset in place, with ``var['n_cells']``.
    """
    dispatch(adata, "filter_genes", on="X")  # the backend for the timing table; checks X
    n_cells = cells_per_gene(adata.X)
    mask = n_cells >= min_cells
    if not mask.any():
        raise ParameterError(
            f"filter_genes(min_cells={min_cells}) removes every gene: the most widely detected gene "
            f"is in {int(n_cells.max())} cells. Lower min_cells."
        )
    adata.var["n_cells"] = n_cells
    subset_var(adata, mask)  # chunked X: computed here
    logger.info(f"    kept {int(mask.sum())} of {mask.size} genes")
    return adata


def _detected_block(block) -> np.ndarray:
    if getattr(block, "format", None) != "csr":
        n = (block > 0).sum(axis=0)
        return np.asarray(n.get() if is_gpu_array(n) else n).ravel()
    if is_gpu_array(block):
        from .._gpu import cells_per_gene as on_gpu

        return on_gpu(block)
    return np.bincount(block.indices[block.data > 0], minlength=block.shape[1])


def _detected_part(block) -> tuple:
    return (_detected_block(block),)


def cells_per_gene(X) -> np.ndarray:
    """Count the cells in which each gene is detected (chunk by chunk when ``X`` is chunked)."""
    if not is_dask(X):
        return _detected_block(X)
    return sum_over_chunks(X, _detected_part)[0]


def _qc_chunk(block, sets: np.ndarray) -> tuple:
    """Return a chunk's QC sums, per cell and per gene.

    Per cell (host, cells x [counts, genes detected, counts in each gene set]); per gene (cells
    detected, counts).
    """
    xp = xp_of(block)
    if is_gpu_array(block) and hasattr(block, "indptr"):
        from .. import _gpu

        if _gpu._plain(block) and sets.shape[1] <= _gpu.QC_MAX_SETS:
            cells, detected, counts = _gpu.qc_sums(block, sets)
            return host_array(cells), (host_array(detected).astype(np.int64), host_array(counts))
    w = xp.asarray(sets, dtype=xp.float32)
    if hasattr(block, "indptr"):
        data = block.data
        counts = xp.asarray(block.sum(axis=1)).ravel()
        genes = xp.diff(block.indptr).astype(xp.float64)
        stored_zeros = data <= 0  # stored values that are not detections
        if bool(stored_zeros.any()):
            flags = type(block)(
                (stored_zeros.astype(xp.float32), block.indices, block.indptr), shape=block.shape
            )
            genes -= xp.asarray(flags.sum(axis=1)).ravel()
        in_sets = xp.asarray(block @ w).reshape(block.shape[0], -1)
        gene_counts = xp.bincount(block.indices, weights=data, minlength=block.shape[1])
    else:
        counts = block.sum(axis=1)
        genes = (block > 0).sum(axis=1).astype(xp.float64)
        in_sets = block @ w
        gene_counts = block.sum(axis=0, dtype=xp.float64)
    cells = xp.column_stack([counts.astype(xp.float64), genes, in_sets.astype(xp.float64)])
    return host_array(cells), (_detected_block(block), host_array(gene_counts).astype(np.float64))


def qc_sums(X, sets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cell and per-gene QC sums of chunked counts ``X``, in one pass over the chunks.

    ``sets`` (genes x k, boolean): gene sets (mitochondrial, ribosomal...). Returns, as host
    arrays: cells x (2 + k) [counts, genes detected, counts in each set]; cells detected and
    counts per gene. The per-gene sums are added up where the chunks are.
    """
    import dask

    parts = [dask.delayed(_qc_chunk, nout=2)(b, sets) for b, _, _ in row_blocks(X)]
    total = dask.delayed(add_parts)(*run_totals([genes for _, genes in parts]))
    cells, (detected, gene_counts) = compute_rows([c for c, _ in parts], X.chunks[0], total)
    return cells, detected, gene_counts
