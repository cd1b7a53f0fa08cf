"""Plots at scale: a bounded number of cells drawn, each plot timed, palettes kept."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData
from matplotlib.collections import LineCollection

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


def test_paga_places_each_group_at_its_cells_and_draws_its_strong_edges(big, monkeypatch, tmp_path):
    # four groups in four corners of the embedding, two pairs joined (0-1 strongly, 2-3 weakly)
    centre = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=np.float32)
    codes = big.obs["leiden"].cat.codes.to_numpy()
    big.obsm["X_umap"] = centre[codes] + np.random.default_rng(1).normal(size=(big.n_obs, 2))
    conn = np.zeros((4, 4))
    conn[0, 1] = conn[1, 0] = 0.8
    conn[2, 3] = conn[3, 2] = 0.005  # below the default threshold (0.01)
    big.uns["paga"] = {"connectivities": sp.csr_matrix(conn), "groups": "leiden"}
    drawn = {}
    monkeypatch.setattr(_plots, "_finish", lambda fig, name, note="": drawn.update({name: fig}))
    scp.pl.paga(big)
    np.testing.assert_allclose(big.uns["paga"]["pos"], centre, atol=0.2)
    (lines,) = [c for c in drawn["paga"].axes[0].collections if isinstance(c, LineCollection)]
    assert len(lines.get_segments()) == 1  # 0-1 only
    np.testing.assert_allclose(lines.get_segments()[0], centre[[0, 1]], atol=0.2)
    scp.pl.paga(big, threshold=0)
    (lines,) = [c for c in drawn["paga"].axes[0].collections if isinstance(c, LineCollection)]
    assert len(lines.get_segments()) == 2
    with pytest.raises(scp.ParameterError, match="basis='X_tsne' is not in obsm; it has: X_umap."):
        scp.pl.paga(big, basis="X_tsne")
    big.uns["paga"]["connectivities"] = sp.csr_matrix(conn[:3, :3])  # groups changed since
    with pytest.raises(scp.ParameterError, match="joins 3 groups of 'leiden', which now has 4"):
        scp.pl.paga(big)
    del big.uns["paga"]
    with pytest.raises(scp.ParameterError, match=r"run scp.tl.paga\(adata, groups=...\) first"):
        scp.pl.paga(big)
    plt.close("all")


def test_paga_plot_imports_neither_networkx_nor_igraph(tmp_path):
    code = (
        "import sys, numpy as np, pandas as pd, scipy.sparse as sp, anndata as ad\n"
        "import scplaybook as scp\n"
        "a = ad.AnnData(np.zeros((40, 1), np.float32))\n"
        "a.obs['g'] = pd.Categorical(np.repeat(['a', 'b'], 20))\n"
        "a.obsm['X_umap'] = np.random.default_rng(0).normal(size=(40, 2))\n"
        "a.uns['paga'] = {'connectivities': sp.csr_matrix(np.array([[0, .5], [.5, 0]])), 'groups': 'g'}\n"
        f"scp.settings.set_figdir({str(tmp_path)!r})\n"
        "scp.pl.paga(a)\n"
        "print(sorted(m for m in ('networkx', 'igraph') if m in sys.modules))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "paga.png").stat().st_size > 0


def test_qc_violins_have_matplotlibs_density_from_a_histogram():
    from scipy.stats import gaussian_kde  # Scott's rule, as matplotlib's violin plot

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.lognormal(7, 0.5, 30_000), rng.normal(200, 20, 20_000)])
    coords = np.linspace(x.min(), x.max(), 100)
    exact = gaussian_kde(x)(coords)
    np.testing.assert_allclose(_plots._binned_kde(x, coords), exact, atol=0.005 * exact.max())
    assert np.all(_plots._binned_kde(np.full(10, 3.0), np.full(100, 3.0)) == 1)  # one value
