"""The analysis recipe, written once: the steps in their order, each with its parameters.

The notebook spells the same calls out, one step per cell, for people to read; the kernel warm-up,
the benchmark's ``ours`` pipeline, the profilers and the tests run them from here, so that a change
of a step's call or of a default is made in one place (and ``tests/test_recipe.py`` checks that the
notebook's parameter cell has the same defaults).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from . import get, pp, tl

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
    "batch_key": "assay",
    "perplexity": 30,
    "label_key": "cell_type",
    "seed": 0,
}

#: The original NVIDIA/scverse playbook's parameters (the benchmark's reference recipe).
ORIGINAL = {**DEFAULTS, "min_genes": None, "n_top_genes": 5000, "n_comps": 100}


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
