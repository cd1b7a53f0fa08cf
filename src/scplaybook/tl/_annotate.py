"""Cell-type labels for clusters from a table of marker genes."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._errors import ParameterError
from .._settings import logger
from .._timing import timed

if TYPE_CHECKING:
    from anndata import AnnData

UNASSIGNED = "unassigned"


def marker_table(name: str = "pbmc") -> pd.DataFrame:
    """Return a marker table shipped with the playbook.

    Parameters
    ----------
    name
        ``"pbmc"``: the blood lineages (T, NK, B, plasma, monocytes, dendritic, platelets,
        macrophages), a few canonical markers each.

    Returns
    -------
    One row per marker: ``cell_type``, and its symbol in ``human`` and ``mouse`` (the lineage's
    marker in that species; empty where it has none).
    """
    path = resources.files("scplaybook.datasets") / f"markers_{name}.csv"
    if not path.is_file():
        raise ParameterError(f"no marker table {name!r}; the playbook ships: 'pbmc'.")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _marker_sets(markers, genes: pd.Index) -> tuple[dict[str, list[str]], str]:
    """``{cell type: its markers present in genes}`` and the species column that matched."""
    if isinstance(markers, dict):
        table = pd.DataFrame(
            [(t, g) for t, gs in markers.items() for g in gs], columns=["cell_type", "genes"]
        )
    elif isinstance(markers, pd.DataFrame):
        table = markers
    elif isinstance(markers, str | Path) and Path(markers).suffix == ".csv":
        table = pd.read_csv(markers, dtype=str, keep_default_na=False)
    else:
        table = marker_table(str(markers))
    columns = [c for c in table.columns if c != "cell_type"]
    if "cell_type" not in table or not columns:
        raise ParameterError(
            "a marker table needs a 'cell_type' column and one column of gene symbols per species."
        )
    # one set of the data's genes: Series.isin(genes) converted all of them per call (2 s for
    # 13 calls with 20,000 Arrow-backed names, measured on the GPU machine's host)
    present = set(genes.tolist())
    has = present.__contains__
    found = {c: int(table[c].map(has).sum()) for c in columns}
    column = max(found, key=found.get)
    sets = {
        t: list(dict.fromkeys(g[g.map(has).to_numpy(dtype=bool)]))
        for t, g in table.groupby("cell_type", sort=False)[column]
    }
    sets = {t: g for t, g in sets.items() if g}
    if not sets:
        raise ParameterError(
            f"none of the marker genes ({', '.join(columns)} symbols) is in the data: are the gene "
            "names symbols (gene_symbols=...), and of this species?"
        )
    return sets, column


@timed("annotate")
def annotate(
    adata: AnnData,
    *,
    groupby: str = "leiden",
    markers: str | Path | pd.DataFrame | dict[str, list[str]] = "pbmc",
    key_added: str = "cell_type_predicted",
    min_score: float = 0.5,
) -> AnnData:
    """Label each cluster with the cell type whose markers it expresses most, in place.

    For every cluster, the mean log-normalised expression of each marker, standardised across
    clusters (a z-score, so that a highly expressed gene does not outweigh a specific one); a cell
    type's score is the mean over its markers. A cluster takes the best-scoring type, or
    ``"unassigned"`` below ``min_score``. This works where the types are known, distinct lineages;
    for fine subtypes or unfamiliar tissue, use a reference-based annotator (CellTypist, scANVI,
    Azimuth) instead.

    Parameters
    ----------
    adata
        Clustered data with log-normalised values (``raw`` when it is there).
    groupby
        ``obs`` column of clusters.
    markers
        ``"pbmc"`` (shipped), a CSV path or table with ``cell_type`` and a column of symbols per
        species (the column matching most genes is used), or ``{cell type: [genes]}``.
    key_added
        ``obs`` column for the labels; the scores go to ``uns[key_added]``.
    min_score
        Least score (mean z) to label a cluster.

    Returns
    -------
    ``adata`` with ``obs[key_added]`` and ``uns[key_added]`` (``scores``: clusters x types;
    ``markers``: the genes used per type; ``species``: the table column that matched).
    """
    from ..get import expression

    if groupby not in adata.obs:
        raise ParameterError(f"groupby={groupby!r} is not a column of obs: cluster first.")
    genes = adata.raw.var_names if adata.raw is not None else adata.var_names
    try:
        sets, column = _marker_sets(markers, genes)
    except ParameterError:
        if adata.raw is not None:
            raise
        # data read in row chunks keep only the highly variable genes (no raw): the table was
        # checked against all genes at load, so say why no cluster gets a label, and go on
        logger.warning(
            f"    no marker of the table is among the {adata.n_vars} genes kept (highly variable "
            "only: raw is not kept for data in row chunks); every cluster is 'unassigned'"
        )
        adata.obs[key_added] = pd.Categorical([UNASSIGNED] * adata.n_obs)
        return adata
    expr = expression(adata, [g for gs in sets.values() for g in gs])
    clusters = adata.obs[groupby].astype("category")
    means = expr.groupby(clusters.to_numpy(), observed=True).mean()
    std = means.std(ddof=0).replace(0, np.nan)
    z = ((means - means.mean()) / std).fillna(0)
    scores = pd.DataFrame({t: z[g].mean(axis=1) for t, g in sets.items()})
    best, top = scores.idxmax(axis=1), scores.max(axis=1)
    label = best.where(top >= min_score, UNASSIGNED)
    types = [t for t in sets if t in set(label)] + (
        [UNASSIGNED] if (label == UNASSIGNED).any() else []
    )
    adata.obs[key_added] = pd.Categorical(
        clusters.map(label.to_dict()).astype(str), categories=types
    )
    scores.index = scores.index.astype(str)
    adata.uns[key_added] = {
        "scores": scores,
        "markers": {t: list(g) for t, g in sets.items()},
        "species": column,
        "groupby": groupby,
    }
    logger.info(
        f"    {len(scores)} clusters labelled from {sum(map(len, sets.values()))} {column} "
        f"markers of {len(sets)} types; unassigned: {int((label == UNASSIGNED).sum())}"
    )
    return adata
