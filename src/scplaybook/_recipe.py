"""The analysis recipe, written once: the steps in their order, each with its parameters.

The notebook spells the same calls out, one step per cell, for people to read; the kernel warm-up,
the benchmark's ``ours`` pipeline, the profilers and the tests run them from here, so that a change
of a step's call or of a default is made in one place (and ``tests/test_recipe.py`` checks that the
notebook's parameter cell has the same defaults).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from . import get, pp, tl
from ._settings import logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from anndata import AnnData

#: The analysis parameters and their defaults (the notebook's, apart from infrastructure ones).
DEFAULTS: dict = {
    "qc_method": "fixed",
    "min_genes": 200,
    "max_genes": 5000,
    "max_pct_mt": 20.0,
    "n_mads": 5.0,
    "min_cells": 3,
    "n_top_genes": 2000,
    "n_comps": 50,
    "n_pcs": 40,
    "n_neighbors": 15,
    "resolution": 0.6,
    "batch_key": "auto",
    "perplexity": 30,
    "label_key": "auto",
    "seed": 0,
}

#: The original NVIDIA/scverse playbook's parameters (the benchmark's reference recipe).
ORIGINAL = {**DEFAULTS, "min_genes": None, "n_top_genes": 5000, "n_comps": 100}


#: Columns of ``obs`` that ``batch_key="auto"`` / ``label_key="auto"`` use, the first found.
BATCH_COLUMNS = ("batch", "sample", "assay")
LABEL_COLUMNS = ("cell_type", "celltype", "cell_types")


def _auto_column(adata: AnnData, name: str, candidates: tuple[str, ...], what: str) -> str | None:
    """Return the first of ``candidates`` in ``obs`` that can serve (2+ values, none empty)."""
    for c in candidates:
        if c not in adata.obs:
            continue
        col = adata.obs[c]
        n = col.nunique()
        if col.isna().any() or not 2 <= n <= adata.n_obs // 2:
            logger.info(f"{name}='auto': obs[{c!r}] has {n} values or empty ones; not used")
            continue
        logger.info(f"{name}='auto': obs[{c!r}] ({n} {what}); set {name}=... to choose another")
        return c
    logger.info(
        f"{name}='auto': no obs column {' / '.join(candidates)}, so no {what}; "
        f"set {name}='COLUMN' to use one"
    )
    return None


def resolve_params(adata: AnnData, params: dict[str, Any]) -> dict[str, Any]:
    """Settle the parameters set to ``"auto"`` against the data, each choice said in the log.

    ``batch_key`` / ``label_key``: the first of :data:`BATCH_COLUMNS` / :data:`LABEL_COLUMNS` in
    ``obs`` with 2 or more values and no empty one, else ``None`` (no Harmony correction; groups
    are the Leiden clusters). ``dpt_root`` / ``dpt_groups``: the lineage the dataset declares
    (``uns['synthetic']['trajectory']``, as the demo does) when its labels are used; otherwise
    all cells, with the root at one end of the first diffusion component (:func:`scplaybook.tl.dpt`
    with ``root_group="auto"``).

    Parameters
    ----------
    adata
        The data the parameters are for (its ``obs`` columns and ``uns``).
    params
        Parameters, some of them ``"auto"``.

    Returns
    -------
    A copy of ``params`` with no ``"auto"`` left except ``dpt_root`` without a declared lineage.
    """
    p = dict(params)
    if p.get("batch_key") == "auto":
        p["batch_key"] = _auto_column(adata, "batch_key", BATCH_COLUMNS, "batches")
    if p.get("label_key") == "auto":
        p["label_key"] = _auto_column(adata, "label_key", LABEL_COLUMNS, "cell-type labels")
    declared = (adata.uns.get("synthetic") or {}).get("trajectory")
    if p.get("dpt_root") == "auto" or p.get("dpt_groups") == "auto":
        lineage = [str(g) for g in declared] if declared is not None and len(declared) else None
        key = p.get("label_key")  # a key not in obs is refused by check_params, with the columns
        labels = set(adata.obs[key].astype(str)) if key in adata.obs else set()
        if lineage and set(lineage) <= labels:
            if p.get("dpt_root") == "auto":
                p["dpt_root"] = lineage[0]
            if p.get("dpt_groups") == "auto":
                p["dpt_groups"] = lineage
            logger.info(f"dpt: the lineage the dataset declares, {' -> '.join(lineage)}")
        elif p.get("dpt_groups") == "auto":
            p["dpt_groups"] = None  # all cells; dpt_root 'auto' is settled by tl.dpt
    return p


def _filter(a: AnnData, p: dict) -> None:
    pp.filter_cells(
        a, method=p["qc_method"], min_genes=p["min_genes"], max_genes=p["max_genes"],
        max_pct_mt=p["max_pct_mt"], n_mads=p["n_mads"],
    )  # fmt: skip
    pp.filter_genes(a, min_cells=p["min_cells"])


def _normalize(a: AnnData, p: dict) -> None:
    pp.normalize_total(a, target_sum=1e4)
    pp.log1p(a)


def _knn_umap(a: AnnData, p: dict) -> None:
    pp.neighbors(a, n_neighbors=p["n_neighbors"], n_pcs=p["n_pcs"], random_state=p["seed"])
    tl.umap(a, random_state=p["seed"])


def _harmony_graph(a: AnnData, p: dict) -> None:
    s = p["seed"]
    pp.neighbors(
        a, n_neighbors=p["n_neighbors"], n_pcs=p["n_pcs"], use_rep="X_pca_harmony",
        key_added="harmony", random_state=s,
    )  # fmt: skip
    tl.umap(a, neighbors_key="harmony", key_added="X_umap_harmony", random_state=s)
    for algorithm in (tl.louvain, tl.leiden):
        name = algorithm.__name__
        algorithm(
            a, resolution=p["resolution"], neighbors_key="harmony", key_added=f"{name}_harmony",
            random_state=s,
        )  # fmt: skip


def _groupby(p: dict) -> str:
    return p["label_key"] or "leiden_harmony"


#: ``(name, step)`` in order; ``step(adata, params)`` runs the step's calls in place.
STEPS: list[tuple[str, Callable[[AnnData, dict], None]]] = [
    ("QC", lambda a, p: pp.calculate_qc_metrics(a)),
    ("filter", _filter),
    ("normalize + log1p", _normalize),
    ("HVG + raw + subset", lambda a, p: pp.highly_variable_genes(a, n_top_genes=p["n_top_genes"])),
    ("regress out", lambda a, p: pp.regress_out(a, keys=["total_counts", "pct_counts_mt"])),
    ("scale", lambda a, p: pp.scale(a, max_value=10)),
    ("PCA", lambda a, p: pp.pca(a, n_comps=p["n_comps"], random_state=p["seed"])),
    ("kNN + UMAP", _knn_umap),
    ("Louvain", lambda a, p: tl.louvain(a, resolution=p["resolution"], random_state=p["seed"])),
    ("Leiden", lambda a, p: tl.leiden(a, resolution=p["resolution"], random_state=p["seed"])),
    ("Harmony", lambda a, p: pp.harmony_integrate(a, p["batch_key"], random_state=p["seed"])),
    ("kNN/UMAP/clusters (Harmony)", _harmony_graph),
    (
        "t-SNE",
        lambda a, p: tl.tsne(
            a,
            use_rep="X_pca_harmony",
            n_pcs=p["n_pcs"],
            perplexity=p["perplexity"],
            random_state=p["seed"],
        ),
    ),  # fmt: skip
    ("gather X", lambda a, p: get.gather_x(a)),
    (
        "logreg DE",
        lambda a, p: tl.rank_genes_groups(a, _groupby(p), method="logreg", use_raw=False),
    ),  # fmt: skip
    ("Wilcoxon DE", lambda a, p: tl.rank_genes_groups(a, _groupby(p), method="wilcoxon")),
    ("diffmap", lambda a, p: tl.diffmap(a, neighbors_key="harmony")),
]
STEP_NAMES = [name for name, _ in STEPS]


def run(
    adata: AnnData,
    params: dict | None = None,
    *,
    only: Iterable[str] | None = None,
    step: Callable[[str], contextlib.AbstractContextManager] | None = None,
) -> AnnData:
    """Run the recipe (or the steps named in ``only``) on ``adata``, in place.

    Parameters
    ----------
    adata
        Raw counts, read with :func:`scplaybook.read` (and on the GPU with ``get.to_gpu``).
    params
        Parameters that differ from :data:`DEFAULTS`.
    only
        Names from :data:`STEP_NAMES` to run, in the recipe's order; ``None`` runs them all.
    step
        Called with each step's name around the step (e.g. a benchmark's clock).

    Returns
    -------
    ``adata``, with every result under scanpy's keys.
    """
    p = {**DEFAULTS, **(params or {})}
    unknown = set(p) - set(DEFAULTS)
    if unknown:
        raise KeyError(f"unknown recipe parameter(s): {', '.join(sorted(unknown))}")
    p = resolve_params(adata, p)
    wanted = STEP_NAMES if only is None else list(only)
    missing = [n for n in wanted if n not in STEP_NAMES]
    if missing:
        raise KeyError(f"no recipe step(s) {missing}; the steps are: {', '.join(STEP_NAMES)}")
    around = step or (lambda name: contextlib.nullcontext())
    for name, fn in STEPS:
        if name in wanted:
            with around(name):
                fn(adata, p)
    return adata
