"""Plots a person would rather look at than read; each is also saved as PNG."""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.cbook import violin_stats

from .. import _figures
from .._backend import is_gpu_array
from .._dispatch import host
from .._errors import ParameterError, check_obsm_key
from .._settings import settings
from .._timing import timed

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from anndata import AnnData
    from matplotlib.figure import Figure


def _timed_plot[**P](func: Callable[P, None]) -> Callable[P, None]:
    """Time a plot as a step ``plot NAME`` of the timing table: drawing 200,000 cells takes seconds."""
    default = inspect.signature(func).parameters["name"].default

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        name = kwargs.get("name") or default
        if name is None:  # markers: named after its kind and key
            name = f"markers_{kwargs.get('kind', 'dotplot')}"
        return timed(f"plot {name}")(func)(*args, **kwargs)

    return wrapper


def _finish(fig: Figure, name: str, note: str = "") -> None:
    """Save ``fig`` as ``figdir/NAME.png`` and show it; in a notebook the saved PNG is shown.

    Drawing is what a plot of many cells costs: in a notebook a worker process draws the figure
    while the analysis goes on (:mod:`scplaybook._figures`); elsewhere it is drawn here, once, and
    the notebook shows the picture just saved instead of drawing the figure a second time.
    """
    if note:  # under the figure, e.g. how many cells a scatter plot draws
        fig.text(0.01, 0.0, note, fontsize=8, ha="left", va="top", color="0.35")
    if settings.figdir is not None and _figures.submit(fig, settings.figdir / f"{name}.png", name):
        plt.close(fig)
        return
    png = None
    if settings.figdir is not None:
        png = _figures.save(fig, settings.figdir / f"{name}.png")
    if png is not None and _figures.in_notebook():
        from IPython.display import Image, display

        display(Image(data=png))
    else:
        plt.show()
    plt.close(fig)


@_timed_plot
def qc(
    adata: AnnData,
    *,
    name: str = "qc",
    min_genes: float | None = None,
    max_genes: float | None = None,
    max_pct_mt: float | None = None,
    max_cells: int | None = None,
) -> None:
    """Violin plots of genes, counts and mitochondrial % per cell, and the two QC scatter plots.

    Cut-offs that are given are drawn as dashed lines, so that one sees what a filter will remove.

    Parameters
    ----------
    adata
        Data with QC metrics (:func:`scplaybook.pp.calculate_qc_metrics`).
    name
        File name of the PNG under ``settings.figdir`` (no extension).
    min_genes, max_genes, max_pct_mt
        Cut-offs to draw (``None``: none).
    max_cells
        Cells drawn at most (default :data:`MAX_CELLS_DRAWN`; ``0``: all), a random sample beyond.
    """
    rows, note = _sample(adata.n_obs, MAX_CELLS_DRAWN if max_cells is None else max_cells)
    qc_cols = ["n_genes_by_counts", "total_counts", "pct_counts_mt"]
    drawn = adata.obs[qc_cols].iloc[rows]  # the same distributions as all cells, drawn fast
    # laid out when drawn (by a worker in a notebook), not here: the text extents that the layout
    # needs were most of this figure's cost in the kernel
    fig, axes = plt.subplots(1, 5, figsize=(20, 3.8), layout="constrained")
    for ax, col in zip(axes[:3], qc_cols, strict=True):
        v = drawn[col].to_numpy(dtype=float)
        ax.violin(violin_stats(v, _binned_kde), showmedians=True)
        ax.scatter(
            1 + np.random.default_rng(0).uniform(-0.15, 0.15, v.size), v, s=0.5, c="k", alpha=0.3
        )
        ax.set_title(col)
        ax.set_xticks([])
    axes[3].scatter(drawn["total_counts"], drawn["pct_counts_mt"], s=1, alpha=0.4)
    axes[3].set(
        xscale="log", xlabel="total_counts", ylabel="pct_counts_mt", title="counts vs mito %"
    )
    axes[4].scatter(drawn["total_counts"], drawn["n_genes_by_counts"], s=1, alpha=0.4)
    axes[4].set(
        xscale="log",
        yscale="log",
        xlabel="total_counts",
        ylabel="n_genes_by_counts",
        title="counts vs genes",
    )
    # the cut-offs, on every panel whose y axis they apply to
    genes, mito = (min_genes, max_genes), (max_pct_mt,)
    for ax, cuts in ((axes[0], genes), (axes[2], mito), (axes[3], mito), (axes[4], genes)):
        for c in cuts:
            if c is not None:
                ax.axhline(c, ls="--", c="tab:red", lw=1)
    _finish(fig, name, note)


def _binned_kde(x: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Gaussian kernel density of ``x`` at ``coords``, from a 2,048-bin histogram of ``x``.

    matplotlib's violin plot evaluates its kernel density at every data point: at the QC plot's
    50,000 cells that was 1.3 s of the kernel per violin on the H200 machine. The same bandwidth
    (Scott's rule, matplotlib's default) over bins far narrower than it gives the same curve.
    """
    x = x[np.isfinite(x)]
    bw = x.std(ddof=1) * x.size ** (-1 / 5) if x.size > 1 else 0.0
    if not bw > 0:  # one value: a flat body at it
        return np.ones_like(coords, dtype=float)
    counts, edges = np.histogram(x, bins=2048)
    centres = (edges[:-1] + edges[1:]) / 2
    used = counts > 0
    z = (coords[:, None] - centres[used][None, :]) / bw
    return np.exp(-0.5 * z**2) @ counts[used] / (x.size * bw * np.sqrt(2 * np.pi))


@_timed_plot
def pca_variance_ratio(
    adata: AnnData, *, n_pcs: int = 50, name: str = "pca_variance_ratio"
) -> None:
    """Variance explained by each principal component (log scale).

    Parameters
    ----------
    adata
        Data with ``uns['pca']``.
    n_pcs
        Components to show.
    name
        File name of the PNG under ``settings.figdir`` (no extension).
    """
    ratio = np.asarray(adata.uns["pca"]["variance_ratio"])[:n_pcs]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, ratio.size + 1), ratio, "o-", ms=3)
    ax.set(yscale="log", xlabel="PC", ylabel="variance ratio", title="PCA variance ratio")
    _finish(fig, name)


@_timed_plot
def embedding(
    adata: AnnData,
    basis: str,
    color: Sequence[str | None],
    *,
    name: str,
    title: Sequence[str] | None = None,
    max_cells: int | None = None,
    **kwargs,
) -> None:
    """Scatter ``obsm[basis]`` coloured by each of ``color`` (a panel each).

    Beyond ``max_cells`` cells a random sample of that many is drawn (said under the figure): at
    200,000 cells every panel costs seconds to draw, and the picture is the same.

    Parameters
    ----------
    adata
        Data with ``obsm[basis]``.
    basis
        Key of ``obsm`` (``"X_umap"``, ``"X_tsne"``...).
    color
        Columns of ``obs`` or gene names, a panel each (``None`` entries are skipped).
    name
        File name of the PNG under ``settings.figdir`` (no extension).
    title
        A title per panel (default: the names in ``color``).
    max_cells
        Cells drawn at most (default :data:`MAX_CELLS_DRAWN`, or :data:`MAX_POINTS_DRAWN` over the
        panels where there are more than four; ``0``: all).
    **kwargs
        Passed to ``scanpy.pl.embedding``.
    """
    import scanpy as sc

    color = [c for c in color if c is not None]
    view, note = _drawn(adata, basis, color, max_cells)
    fig = sc.pl.embedding(
        view, basis=basis, color=color, title=title, return_fig=True, show=False, **kwargs
    )
    _keep_palettes(view, adata, color)
    _finish(fig, name, note)


MAX_CELLS_DRAWN = 50_000
"""Cells a scatter plot draws by default (a random sample beyond: the picture is the same)."""

MAX_POINTS_DRAWN = 200_000
"""Points a figure of many panels draws by default (12 marker panels: 16,666 cells each)."""


def _drawn(
    adata: AnnData, basis: str | None, color: Sequence[str], max_cells: int | None
) -> tuple[AnnData, str]:
    """Return what a scatter plot draws, on the host: ``obsm[basis]``, the ``color`` columns or genes.

    At most ``max_cells`` cells (``None``: :data:`MAX_CELLS_DRAWN`, fewer for more than four panels,
    :data:`MAX_POINTS_DRAWN` in all; ``0``: all), a random sample in
    data order; the palettes of ``color`` in ``uns`` come along. Returns the small AnnData and the
    note that says how many cells it draws (empty when all).
    """
    if max_cells is None:  # a figure of many panels draws fewer cells in each
        limit = min(MAX_CELLS_DRAWN, max(10_000, MAX_POINTS_DRAWN // max(len(color), 1)))
    else:
        limit = max_cells
    rows, note = _sample(adata.n_obs, limit)
    in_obs = [c for c in color if c in adata.obs]
    palettes = {
        f"{c}_colors": adata.uns[f"{c}_colors"] for c in in_obs if f"{c}_colors" in adata.uns
    }
    genes = [c for c in color if c not in adata.obs]
    return _host_view(adata, rows, in_obs, genes, basis=basis, uns=palettes), note


def _host_view(
    adata: AnnData,
    rows: np.ndarray | None,
    obs_cols: Sequence[str],
    genes: Sequence[str],
    *,
    basis: str | None = None,
    uns: dict | None = None,
) -> AnnData:
    """Return a small host AnnData for a plot.

    Its cells are ``rows`` (``None``: all), with the ``obs_cols``, the expression of ``genes``
    (wherever ``X`` lives) as ``X`` and ``obsm[basis]``.
    """
    import anndata as ad

    from ..get import expression

    rows = np.arange(adata.n_obs) if rows is None else rows
    values = expression(adata, genes).iloc[rows] if genes else None
    return ad.AnnData(
        X=values.to_numpy() if genes else np.zeros((rows.size, 0), np.float32),
        obs=adata.obs[list(obs_cols)].iloc[rows],
        var=pd.DataFrame(index=values.columns if genes else []),
        obsm={basis: host(adata.obsm[basis])[rows]} if basis else {},
        uns=uns or {},
    )


def _sample(n: int, limit: int) -> tuple[np.ndarray, str]:
    """Rows a plot draws: all ``n``, or ``limit`` at random in data order with a note saying so."""
    if not limit or n <= limit:
        return np.arange(n), ""
    rows = np.sort(np.random.default_rng(0).choice(n, limit, replace=False))
    return rows, f"{limit:,} of {n:,} cells drawn (a random sample)"


def _keep_palettes(view: AnnData, adata: AnnData, color: Sequence[str]) -> None:
    """Give ``adata`` the palettes scanpy chose while drawing ``view`` (later plots use them)."""
    for c in color:
        key = f"{c}_colors"
        if key in view.uns and key not in adata.uns:
            adata.uns[key] = view.uns[key]


@_timed_plot
def batch_mixing(adata: AnnData, *, name: str = "batch_mixing") -> None:
    """Batch-mixing score of each kNN graph (before/after Harmony).

    Parameters
    ----------
    adata
        Data with ``uns['batch_mixing']`` (:func:`scplaybook.tl.batch_mixing`).
    name
        File name of the PNG under ``settings.figdir`` (no extension).
    """
    scores = {k: v for k, v in adata.uns.get("batch_mixing", {}).items() if np.isfinite(v)}
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(
        list(scores),
        list(scores.values()),
        color=["tab:red", "tab:green", "tab:blue"][: len(scores)],
    )
    ax.set(ylim=(0, 1), ylabel="normalised batch entropy", title="batch mixing (1 = fully mixed)")
    for i, v in enumerate(scores.values()):
        ax.text(i, v + 0.02, f"{v:.2f}", ha="center")
    _finish(fig, name)


@_timed_plot
def markers(
    adata: AnnData,
    *,
    key: str,
    groupby: str,
    n_genes: int = 3,
    kind: str = "dotplot",
    name: str | None = None,
) -> None:
    """Dot plot (or heat map) of the top ``n_genes`` markers of each group.

    Parameters
    ----------
    adata
        Data with the ranking ``uns[key]``.
    key
        The ranking (``"rank_genes_groups_wilcoxon"``...).
    groupby
        Column of ``obs`` the ranking compared.
    n_genes
        Markers per group.
    kind
        ``"dotplot"`` or ``"heatmap"``.
    name
        File name of the PNG (default: ``markers_<kind>``).
    """
    import scanpy as sc

    fn = sc.pl.rank_genes_groups_dotplot if kind == "dotplot" else sc.pl.rank_genes_groups_heatmap
    kw = {"return_fig": True} if kind == "dotplot" else {}
    rows = None  # a heat map has a row per cell: a bounded sample of each group reads the same
    if kind == "heatmap":
        rows = _per_group_sample(adata.obs[groupby], HEATMAP_CELLS_PER_GROUP)
    data = _plottable(adata, key, groupby, n_genes, rows)
    out = fn(data, key=key, groupby=groupby, n_genes=n_genes, show=False, **kw)
    fig = out.fig if hasattr(out, "fig") and out.fig is not None else plt.gcf()
    if kind == "dotplot" and hasattr(out, "make_figure"):
        out.make_figure()
        fig = out.fig
    _finish(fig, name or f"markers_{kind}_{key}")


HEATMAP_CELLS_PER_GROUP = 500
"""Cells of each group a marker heat map shows (a random sample where a group has more)."""


def _per_group_sample(groups: pd.Series, n: int, seed: int = 0) -> np.ndarray:
    """Sorted row positions: all cells of groups of up to ``n`` cells, ``n`` random ones of larger."""
    codes = pd.Categorical(groups).codes
    rng = np.random.default_rng(seed)
    keep = [
        rows if rows.size <= n else rng.choice(rows, n, replace=False)
        for rows in (np.flatnonzero(codes == c) for c in np.unique(codes))
    ]
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def _plottable(
    adata: AnnData, key: str, groupby: str, n_genes: int, rows: np.ndarray | None = None
) -> AnnData:
    """Return what a marker plot reads: ``adata`` (its ``rows``), or a host copy of it.

    Where the values are on the GPU, only what the plot shows comes to the host: the top
    ``n_genes`` markers of each group, in those cells (at 200k cells all ranked genes took 10 s).
    """
    src = adata.raw if adata.raw is not None else adata
    if not is_gpu_array(src.X):
        return adata if rows is None else adata[rows]
    names = pd.unique(pd.DataFrame(adata.uns[key]["names"]).iloc[:n_genes].to_numpy().ravel())
    genes = [g for g in names if g in src.var_names]
    return _host_view(adata, rows, [groupby], genes, uns={key: adata.uns[key]})


@_timed_plot
def marker_genes(
    adata: AnnData,
    *,
    key: str = "rank_genes_groups_wilcoxon",
    basis: str = "X_umap",
    n_genes: int = 1,
    name: str = "marker_genes",
) -> None:
    """Colour the embedding by the top ``n_genes`` markers of each group (a panel per gene).

    Parameters
    ----------
    adata
        Data with the ranking ``uns[key]`` and ``obsm[basis]``.
    key
        The ranking.
    basis
        Key of ``obsm``.
    n_genes
        Markers per group.
    name
        File name of the PNG under ``settings.figdir`` (no extension).
    """
    import scanpy as sc

    names = pd.DataFrame(adata.uns[key]["names"])
    panels = {}  # gene -> its group, in group order
    for group in names.columns:
        for gene in names[group].iloc[:n_genes]:
            panels.setdefault(str(gene), str(group))
    view, note = _drawn(adata, basis, list(panels), None)
    fig = sc.pl.embedding(
        view,
        basis=basis,
        color=list(panels),
        title=[f"{g} ({grp})" for g, grp in panels.items()],
        color_map="Reds",
        ncols=4,
        return_fig=True,
        show=False,
    )
    _finish(fig, name, note)


@_timed_plot
def highly_variable_genes(adata: AnnData, *, name: str = "highly_variable_genes") -> None:
    """Dispersion against mean expression of every gene, the highly variable ones in colour.

    Parameters
    ----------
    adata
        Data after :func:`scplaybook.pp.highly_variable_genes` (all genes are in ``raw.var``
        when the full matrix was kept; otherwise only the selected ones can be shown).
    name
        File name of the PNG under ``settings.figdir`` (no extension).
    """
    import scanpy as sc

    var = (
        adata.raw.var if adata.raw is not None and "highly_variable" in adata.raw.var else adata.var
    )
    sc.pl.highly_variable_genes(var, show=False)
    _finish(plt.gcf(), name)


@_timed_plot
def doublets(adata: AnnData, *, name: str = "doublets") -> None:
    """Scrublet's doublet scores: observed cells and simulated doublets, with the threshold.

    Parameters
    ----------
    adata
        Data after :func:`scplaybook.pp.scrublet` (one row of panels per sample).
    name
        File name of the PNG under ``settings.figdir`` (no extension).
    """
    if "scrublet" not in adata.uns:
        print("no doublet scores (scrublet did not run on these data)")
        return
    uns = adata.uns["scrublet"]
    scores = adata.obs["doublet_score"].to_numpy(dtype=float)
    if "batched_by" in uns:
        labels = adata.obs[uns["batched_by"]].astype(str).to_numpy()
        rows = [
            (f" ({b})", scores[labels == str(b)], run["doublet_scores_sim"], run.get("threshold"))
            for b, run in uns["batches"].items()
        ]
    else:
        rows = [("", scores, uns["doublet_scores_sim"], uns.get("threshold"))]
    rows = [r for r in rows if np.isfinite(r[1]).any()]  # samples too small to score: not drawn
    fig, axes = plt.subplots(
        len(rows), 2, figsize=(8, 3 * len(rows)), squeeze=False, layout="constrained"
    )
    edges = np.linspace(0, 1, 50)
    for (suffix, observed, simulated, threshold), pair in zip(rows, axes, strict=True):
        for ax, values, what, scale in (
            (pair[0], observed, "Observed transcriptomes", "log"),
            (pair[1], np.asarray(simulated, dtype=float), "Simulated doublets", "linear"),
        ):  # one filled outline per histogram (scanpy's bars were 49 patches each)
            density = np.histogram(values[np.isfinite(values)], edges, density=True)[0]
            ax.stairs(density, edges, fill=True, color="gray", linewidth=0)
            ax.set_yscale(scale)
            if threshold is not None:
                ax.axvline(threshold, c="black", lw=1)
            ax.set(title=what + suffix, xlabel="Doublet score", ylabel="Prob. density")
    _finish(fig, name)


@_timed_plot
def paga(
    adata: AnnData,
    *,
    basis: str = "X_umap",
    threshold: float = 0.01,
    max_cells: int | None = None,
    name: str = "paga",
) -> None:
    """Draw the PAGA graph of groups where the groups lie in an embedding.

    Each group is a node at the median position of its cells in ``obsm[basis]`` (as scanpy's
    ``pl.paga_compare`` places them), its area growing with the group's size, over the cells in
    light grey; two groups are joined by a line as wide as their PAGA connectivity, when that is
    at least ``threshold`` (scanpy's widths and default threshold). The positions are stored as
    ``uns['paga']['pos']``, where ``tl.umap(init_pos="paga")`` finds them.

    scanpy's ``pl.paga`` lays the graph out with igraph and draws it with networkx: importing the
    two took a second of every run (0.9 s on the development machine's CPU, 1.0–1.1 s in the
    kernel on an H200), and its layout is unrelated to the embeddings the other plots show.

    Parameters
    ----------
    adata
        Data after :func:`scplaybook.tl.paga`, with ``obsm[basis]``.
    basis
        Key of ``obsm`` that places the groups (the notebook uses the corrected UMAP).
    threshold
        Connectivities below this are not drawn (``0``: every edge).
    max_cells
        Cells drawn in the background at most (default :data:`MAX_CELLS_DRAWN`; ``0``: all).
    name
        File name of the PNG under ``settings.figdir`` (no extension).
    """
    from matplotlib import patheffects
    from matplotlib.collections import LineCollection

    if "paga" not in adata.uns or "connectivities" not in adata.uns["paga"]:
        raise ParameterError("pl.paga needs uns['paga']: run scp.tl.paga(adata, groups=...) first.")
    check_obsm_key(adata, basis, arg="basis")
    groups = adata.uns["paga"]["groups"]
    labels = adata.obs[groups].cat.categories
    conn = adata.uns["paga"]["connectivities"].tocoo()
    if conn.shape[0] != len(labels):
        raise ParameterError(
            f"uns['paga'] joins {conn.shape[0]} groups of {groups!r}, which now has "
            f"{len(labels)}: run scp.tl.paga(adata, groups={groups!r}) again."
        )
    xy = np.asarray(host(adata.obsm[basis]))[:, :2]
    codes = adata.obs[groups].cat.codes.to_numpy()
    labelled = codes >= 0  # cells without a group (NaN) place nothing
    # a group without cells (an unused category) has no position and is not drawn
    pos = pd.DataFrame(xy[labelled]).groupby(codes[labelled]).median()
    pos = pos.reindex(range(len(labels))).to_numpy()
    adata.uns["paga"]["pos"] = pos
    keep = (conn.row < conn.col) & (conn.data >= threshold)  # each edge once
    sizes = np.bincount(codes[labelled], minlength=len(labels))
    colors = adata.uns.get(f"{groups}_colors")
    if colors is None or len(colors) < len(labels):
        colors = [plt.get_cmap("tab20")(i % 20) for i in range(len(labels))]

    rows, note = _sample(adata.n_obs, MAX_CELLS_DRAWN if max_cells is None else max_cells)
    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    ax.scatter(*xy[rows].T, s=2, c="0.88", linewidths=0, rasterized=True)
    edges = np.stack([pos[conn.row[keep]], pos[conn.col[keep]]], axis=1)
    width = 5 * plt.rcParams["lines.linewidth"] * conn.data[keep]  # scanpy's edge widths
    ax.add_collection(LineCollection(edges, linewidths=width, colors="black", zorder=2))
    area = 2000 / (np.sqrt(len(labels)) + 10) * np.sqrt(sizes / max(np.median(sizes), 1))
    ax.scatter(*pos.T, s=area, c=list(colors[: len(labels)]), edgecolors="face", zorder=3)
    outline = [patheffects.withStroke(linewidth=2, foreground="white")]
    for (x, y), label in zip(pos, labels, strict=True):
        ax.text(
            x, y, str(label), ha="center", va="center", fontsize=8, path_effects=outline, zorder=4
        )
    ax.set(xticks=[], yticks=[], title=f"PAGA of {groups} on {basis.removeprefix('X_')}")
    _finish(fig, name, note)


def timings(*, name: str = "timings") -> None:
    """Horizontal bars of the time each step took."""
    from ..get import timings as table

    df = table()
    fig, ax = plt.subplots(figsize=(7, 0.28 * max(len(df), 4) + 1))
    ax.barh(
        df["step"][::-1],
        df["seconds"][::-1],
        color=np.where(df["backend"][::-1] == "gpu", "tab:green", "tab:blue"),
    )
    ax.set(xlabel="seconds", title=f"step timings (total {df['seconds'].sum():.1f} s)")
    _finish(fig, name)
    _figures.wait()  # the last plot of a run: every figure is in the notebook when its cell ends
