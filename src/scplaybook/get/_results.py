"""Tables of results: markers and step timings."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .._errors import ParameterError
from .._settings import settings

if TYPE_CHECKING:
    from anndata import AnnData


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
