"""Plots at scale: a bounded number of cells drawn, each plot timed, palettes kept."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import scplaybook as scp
from scplaybook.pl import _plots


@pytest.fixture
def big(tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    obs = pd.DataFrame(
        {
            "leiden": pd.Categorical(rng.integers(0, 4, n).astype(str)),
            "total_counts": rng.integers(500, 9000, n).astype(float),
            "n_genes_by_counts": rng.integers(200, 3000, n),
            "pct_counts_mt": rng.uniform(0, 20, n),
        },
        index=[f"c{i}" for i in range(n)],
    )
    a = AnnData(X=rng.poisson(1.0, (n, 5)).astype(np.float32), obs=obs)
    a.var_names = [f"G{i}" for i in range(5)]
    a.obsm["X_umap"] = rng.normal(size=(n, 2)).astype(np.float32)
    scp.settings.figdir = tmp_path
    return a


def _points(fig) -> int:
    """Points in the figure's scatter collections (not the one-point legend and colour-bar ones)."""
    return sum(n for ax in fig.axes for c in ax.collections if (n := len(c.get_offsets())) > 1)


def test_scatter_plots_draw_a_bounded_sample_and_say_so(big, monkeypatch, tmp_path):
    drawn = {}
    monkeypatch.setattr(
        _plots, "_finish", lambda fig, name, note="": drawn.update({name: (_points(fig), note)})
    )
    scp.pl.embedding(big, "X_umap", ["leiden", None, "G1"], name="u", max_cells=1000)
    points, note = drawn["u"]
    assert points == 2 * 1000 and note == "1,000 of 3,000 cells drawn (a random sample)"
    scp.pl.embedding(big, "X_umap", ["leiden"], name="all", max_cells=0)
    assert drawn["all"] == (3000, "")
    scp.pl.qc(big, name="qc", max_cells=500)
    points, note = drawn["qc"]
    assert points == 5 * 500 and note == "500 of 3,000 cells drawn (a random sample)"
    plt.close("all")


def test_palettes_chosen_while_drawing_stay_with_the_data(big):
    scp.pl.embedding(big, "X_umap", ["leiden"], name="u", max_cells=1000)
    assert len(big.uns["leiden_colors"]) == 4
    big.uns["leiden_colors"] = ["#000000", "#111111", "#222222", "#333333"]
    view, _ = _plots._drawn(big, "X_umap", ["leiden"], 100)
    assert list(view.uns["leiden_colors"]) == big.uns["leiden_colors"]  # the user's, not new ones
    plt.close("all")


def test_each_plot_is_a_timed_step_with_its_file(big, tmp_path):
    scp.pl.embedding(big, "X_umap", ["leiden"], name="umap_x")
    scp.pl.qc(big)
    steps = scp.get.timings()["step"].tolist()
    assert steps == ["plot umap_x", "plot qc"]
    assert (tmp_path / "umap_x.png").stat().st_size > 0 and (tmp_path / "qc.png").exists()
    plt.close("all")
