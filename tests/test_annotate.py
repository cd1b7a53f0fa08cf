"""Doublet calls and cell-type labels from the shipped marker table (CPU; the GPU twins: test_gpu.py)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import scplaybook as scp
from scplaybook import ParameterError

from ._biology import preprocess


@pytest.fixture(scope="module")
def clustered(raw_adata):
    a = raw_adata.copy()
    a.var_names = a.var["feature_name"].astype(str).to_numpy()
    return preprocess(a)  # log-normalised raw (all genes), HVG, PCA


def test_expression_reads_genes_in_the_order_asked(clustered):
    genes = ["MS4A1", "CD3E", "LYZ"]
    table = scp.get.expression(clustered, genes)
    assert list(table.columns) == genes and table.index.equals(clustered.obs_names)
    cols = clustered.raw.var_names.get_indexer(genes)
    np.testing.assert_array_equal(table.to_numpy(), clustered.raw.X[:, cols].toarray())
    with pytest.raises(ParameterError, match="NOTAGENE not in the data"):
        scp.get.expression(clustered, ["CD3E", "NOTAGENE"])


def test_clusters_take_the_type_of_their_markers(clustered):
    a = clustered.copy()
    scp.tl.annotate(a, groupby="cell_type")
    truth = a.obs["cell_type"].astype(str)
    assert (a.obs["cell_type_predicted"].astype(str) == truth).mean() >= 0.95
    info = a.uns["cell_type_predicted"]
    assert info["species"] == "human" and "CD3E" in info["markers"]["CD4 T"]
    assert info["scores"].shape == (truth.nunique(), len(info["markers"]))


def test_mouse_symbols_pick_the_mouse_column(clustered):
    a = clustered.copy()
    table = scp.tl.marker_table()
    to_mouse = dict(zip(table["human"], table["mouse"], strict=True))
    names = [to_mouse.get(g) or g for g in a.raw.var_names]
    a.raw.var.index = pd.Index(names)
    scp.tl.annotate(a, groupby="cell_type")
    assert a.uns["cell_type_predicted"]["species"] == "mouse"
    assert "Cd3e" in a.uns["cell_type_predicted"]["markers"]["CD4 T"]
    ok = a.obs["cell_type_predicted"].astype(str) == a.obs["cell_type"].astype(str)
    assert ok.mean() >= 0.9


def test_unknown_clusters_stay_unassigned_and_bad_tables_are_named(clustered):
    a = clustered.copy()
    # a table that knows only B cells: the other clusters score below the bar
    scp.tl.annotate(a, groupby="cell_type", markers={"B": ["MS4A1", "CD79A", "CD19"]})
    got = a.obs.groupby("cell_type", observed=True)["cell_type_predicted"].first().astype(str)
    assert got["B"] == "B" and (got.drop("B") == "unassigned").all()
    with pytest.raises(ParameterError, match="none of the marker genes"):
        scp.tl.annotate(a, groupby="cell_type", markers={"X": ["NOPE1", "NOPE2"]})
    with pytest.raises(ParameterError, match="no marker table 'liver'"):
        scp.tl.annotate(a, groupby="cell_type", markers="liver")
    with pytest.raises(ParameterError, match="not a column of obs"):
        scp.tl.annotate(a, groupby="leiden")


def test_without_raw_and_without_markers_clusters_stay_unassigned(clustered, caplog):
    """The chunked path keeps only the highly variable genes: no marker there is said, not fatal."""
    a = clustered[:, ~clustered.var_names.isin(scp.tl.marker_table()["human"])].copy()
    a.raw = None
    scp.tl.annotate(a, groupby="cell_type")
    assert set(a.obs["cell_type_predicted"]) == {"unassigned"}
    assert "no marker of the table is among the" in caplog.text


def test_a_bad_marker_table_stops_the_run_at_load(adata):
    from scplaybook.runner import check_params

    with pytest.raises(ParameterError, match="no marker table"):
        check_params(adata, {"batch_key": None, "label_key": None, "cell_markers": "liver"})


def test_doublet_calls_find_the_planted_doublets(adata):
    """Scrublet on raw counts; the calls are removed and their names kept (the notebook's
    per-sample run on the demo is held to higher bars in _biology.py)."""
    scp.pp.calculate_qc_metrics(adata)
    scp.pp.filter_cells(adata)
    scp.pp.filter_doublets(adata)  # before scrublet: nothing to remove, said, no error
    assert "filter_doublets" not in adata.uns
    with pytest.raises(ParameterError, match="batch_key='donor' is not a column of obs"):
        scp.pp.scrublet(adata, batch_key="donor")
    scp.pp.scrublet(adata)  # all together: 1,500 cells are few per sample
    called, truth = adata.obs["predicted_doublet"].to_numpy(), adata.obs["is_doublet"].to_numpy()
    assert adata.obs["doublet_score"].between(0, 1).all() and called.dtype == bool
    assert (called & truth).sum() / truth.sum() >= 0.6 and truth[called].mean() >= 0.6
    n = adata.n_obs
    scp.pp.filter_doublets(adata)
    assert adata.n_obs == n - called.sum() and not adata.obs["predicted_doublet"].any()
    assert len(adata.uns["filter_doublets"]["removed"]) == called.sum()


def test_auto_sim_doublet_ratio_follows_the_smallest_sample(caplog):
    """Two simulated doublets per cell for small samples (the demo needs them), one from 50k."""
    from anndata import AnnData

    from scplaybook.pp._doublets import _auto_ratio

    def ratio(sizes):
        batch = np.repeat([f"s{i}" for i in range(len(sizes))], sizes)
        a = AnnData(
            obs=pd.DataFrame(
                {"sample": pd.Categorical(batch)},
                index=batch.astype(object) + np.arange(len(batch)).astype(str),
            )
        )
        return _auto_ratio(a, "sample")

    assert ratio([1900, 2100]) == 2.0
    assert ratio([25_000, 80_000]) == 2.0  # the smallest sample decides
    assert ratio([40_000, 90_000]) == pytest.approx(1.25)
    assert ratio([66_000, 67_000]) == 1.0
    assert "1.00 simulated doublets per cell (smallest sample: 66,000 cells)" in caplog.text


def test_gpu_scrublet_algorithm_matches_scanpys_on_the_host(adata):
    """The GPU's Scrublet (``_scrublet``, rapids-singlecell's algorithm kept on the device) run
    with NumPy/SciPy finds the planted doublets as scanpy's Scrublet does, with scores that rank
    the cells alike, all together and per sample; its per-sample keys are the ones scanpy's score
    plot reads. (The random pairs differ: scanpy draws them from a legacy seed.)"""
    import scanpy as sc
    from scipy.stats import spearmanr

    from scplaybook.pp._doublets import _Ops, _scrublet

    scp.pp.calculate_qc_metrics(adata)
    scp.pp.filter_cells(adata)
    truth = adata.obs["is_doublet"].to_numpy()
    kw = {"expected_doublet_rate": 0.05, "sim_doublet_ratio": 2.0, "threshold": None}
    for batch_key, least_recall in ((None, 0.55), ("assay", 0.15)):  # 350-580 cells per sample
        ours, ref = adata.copy(), adata.copy()
        _scrublet(ours, _Ops(gpu=False), batch_key=batch_key, random_state=0, **kw)
        sc.pp.scrublet(ref, batch_key=batch_key, random_state=0, verbose=False, **kw)
        recall = {}
        for name, a in (("ours", ours), ("scanpy", ref)):
            called = a.obs["predicted_doublet"].to_numpy()
            recall[name] = (called & truth).sum() / truth.sum()
            assert recall[name] >= least_recall and truth[called].mean() >= 0.9, (name, batch_key)
        assert recall["ours"] >= recall["scanpy"] - 0.1, recall
        assert spearmanr(ours.obs["doublet_score"], ref.obs["doublet_score"]).statistic > 0.85
        auc = _auc(ours.obs["doublet_score"].to_numpy(), truth)
        assert auc > 0.85 and auc >= _auc(ref.obs["doublet_score"].to_numpy(), truth) - 0.03
    batches = ours.uns["scrublet"]["batches"]
    assert ours.uns["scrublet"]["batched_by"] == "assay"
    assert set(batches) == set(adata.obs["assay"].unique())
    for b, uns in batches.items():
        n_b = int((adata.obs["assay"] == b).sum())
        assert len(uns["doublet_scores_sim"]) == int(n_b * 2.0) == len(uns["doublet_parents"])
        assert 0 < uns["threshold"] < 1
    sc.pl.scrublet_score_distribution(ours, show=False)  # the notebook's plot reads these keys
    dense = adata.copy()  # a dense matrix (some GEO files): the same scores
    dense.X = dense.X.toarray()
    _scrublet(dense, _Ops(gpu=False), batch_key="assay", random_state=0, **kw)
    np.testing.assert_allclose(dense.obs["doublet_score"], ours.obs["doublet_score"], rtol=1e-6)


def _auc(score: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``truth`` (the rank-sum formula)."""
    from scipy.stats import rankdata

    r = rankdata(score)
    n1 = truth.sum()
    return float((r[truth].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(truth) - n1)))


def test_a_sample_too_small_for_scrublet_is_left_unscored(adata, caplog, tmp_path):
    """A sample of 20 cells (scanpy's and rapids-singlecell's Scrublet both fail on it: a PCA of 30
    components) is named in the log and left unscored; the other samples are scored as alone."""
    scp.pp.calculate_qc_metrics(adata)
    scp.pp.filter_cells(adata)
    adata.obs["sample"] = pd.Categorical(np.where(np.arange(adata.n_obs) < 20, "tiny", "big"))
    alone = adata[adata.obs["sample"] == "big"].copy()
    scp.pp.scrublet(alone, batch_key="sample")
    with caplog.at_level("WARNING", logger="scplaybook"):
        scp.pp.scrublet(adata, batch_key="sample")
    assert "not scored for doublets" in caplog.text and "tiny (20 cells)" in caplog.text
    tiny = (adata.obs["sample"] == "tiny").to_numpy()
    assert adata.obs["doublet_score"][tiny].isna().all()
    assert not adata.obs["predicted_doublet"][tiny].any()
    np.testing.assert_allclose(
        adata.obs["doublet_score"][~tiny].to_numpy(), alone.obs["doublet_score"].to_numpy()
    )
    assert adata.obs["predicted_doublet"][~tiny].sum() > 0
    assert list(adata.uns["scrublet"]["batches"]) == ["big"]
    scp.settings.figdir = tmp_path
    scp.pl.doublets(adata)  # the plot shows the scored sample: one row of two panels
    two_samples = adata.copy()
    two_samples.uns["scrublet"]["batches"]["big2"] = two_samples.uns["scrublet"]["batches"]["big"]
    two_samples.obs["sample"] = pd.Categorical(
        np.where(np.arange(adata.n_obs) % 2 == 0, "big", "big2")
    )
    scp.pl.doublets(two_samples, name="two")
    one, two = (plt.imread(tmp_path / f"{n}.png").shape for n in ("doublets", "two"))
    assert one[1] == two[1] and 1.8 < two[0] / one[0] < 2.2, (one, two)
    n = adata.n_obs
    scp.pp.filter_doublets(adata)
    assert adata.n_obs == n - int(alone.obs["predicted_doublet"].sum())
