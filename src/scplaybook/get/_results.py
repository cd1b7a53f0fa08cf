"""Tables of results: gene expression per cell, markers and step timings."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._backend import is_gpu_array
from .._chunks import is_dask
from .._dispatch import host
from .._errors import ParameterError
from .._settings import settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData


def expression(
    adata: AnnData, genes: Sequence[str], *, use_raw: bool | None = None
) -> pd.DataFrame:
    """Expression of ``genes`` in each cell, as a host table (wherever ``X`` lives).

    Parameters
    ----------
    adata
        Data (``X`` or ``raw`` on the host, on the GPU or in row chunks).
    genes
        Gene names.
    use_raw
        Read ``raw`` (all genes, log-normalised); ``None``: when ``adata`` has it.

    Returns
    -------
    Cells x ``genes``.

    Raises
    ------
    ParameterError
        Genes that are not there, named.
    """
    genes = list(dict.fromkeys(genes))
    src = adata.raw if (adata.raw is not None if use_raw is None else use_raw) else adata
    cols = src.var_names.get_indexer(genes)
    if (cols < 0).any():
        missing = [g for g, c in zip(genes, cols, strict=True) if c < 0]
        raise ParameterError(f"gene(s) {', '.join(missing[:10])} not in the data.")
    order = np.argsort(cols)
    X = columns_to_host(src.X, np.sort(cols))
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    values = np.empty_like(X)
    values[:, order] = X
    return pd.DataFrame(values, index=adata.obs_names, columns=genes)


def columns_to_host(X, sorted_cols: np.ndarray):
    """Return columns ``sorted_cols`` of ``X`` on the host, wherever ``X`` lives; sparse stays sparse.

    On the GPU a CuPy CSR matrix goes through the project's column kernel and only the columns
    taken are copied; row chunks are computed.
    """
    if is_dask(X):
        X = X[:, sorted_cols].compute()
    elif is_gpu_array(X) and hasattr(X, "indptr"):
        from .._gpu import take_cols

        X = take_cols(X, sorted_cols)
    else:
        X = X[:, sorted_cols]
    return host(X)  # GPU values (also from GPU chunks) to the host; host data as they are


def markers(
    adata: AnnData, *, key: str = "rank_genes_groups_wilcoxon", n_genes: int = 10
) -> pd.DataFrame:
    """Top ``n_genes`` markers per group from ``uns[key]`` as one tidy table.

    Columns: ``group``, ``rank`` (1 = best), ``gene``, ``score`` and, where the method gives
    them, ``logfoldchange`` and ``pval_adj``.

    Parameters
    ----------
    adata
        Data with a ranking.
    key
        The ranking in ``uns`` (``"rank_genes_groups_wilcoxon"``, ``"rank_genes_groups_logreg"``).
    n_genes
        Markers per group.

    Returns
    -------
    One row per group and rank.
    """
    if key not in adata.uns:
        raise ParameterError(
            f"no differential-expression result {key!r} in uns: run tl.rank_genes_groups first."
        )
    res = adata.uns[key]
    names = pd.DataFrame(res["names"])
    rows = []
    for group in names.columns:
        for r in range(min(n_genes, len(names))):
            row = {"group": group, "rank": r + 1, "gene": names[group][r]}
            for field, col in (
                ("scores", "score"),
                ("logfoldchanges", "logfoldchange"),
                ("pvals_adj", "pval_adj"),
            ):
                if field in res:
                    row[col] = float(pd.DataFrame(res[field])[group][r])
            rows.append(row)
    return pd.DataFrame(rows)


def timings() -> pd.DataFrame:
    """Every timed step of this session: step, backend, seconds, in the order they ran.

    Returns
    -------
    Columns ``step``, ``backend``, ``seconds``.
    """
    return pd.DataFrame(settings.timings, columns=["step", "backend", "seconds"])
