import numpy as np
import pytest

import scplaybook as scp
from scplaybook.datasets import CELL_TYPES, TRAJECTORY


def test_same_seed_same_counts_other_seed_other_counts():
    a = scp.datasets.synthetic_pbmc(300, 1000, seed=7, progress=False)
    b = scp.datasets.synthetic_pbmc(300, 1000, seed=7, progress=False)
    c = scp.datasets.synthetic_pbmc(300, 1000, seed=8, progress=False)
    assert (a.X != b.X).nnz == 0
    assert a.obs.equals(b.obs)
    assert (a.X != c.X).nnz > 0


def test_file_is_deterministic_byte_for_byte_in_content(tmp_path):
    import anndata as ad

    p1 = scp.datasets.write_demo(
        tmp_path / "a.h5ad", n_cells=200, n_genes=800, seed=1, progress=False
    )
    p2 = scp.datasets.write_demo(
        tmp_path / "b.h5ad", n_cells=200, n_genes=800, seed=1, progress=False
    )
    a, b = ad.read_h5ad(p1), ad.read_h5ad(p2)
    assert (a.X != b.X).nnz == 0 and a.var.equals(b.var)


def test_ground_truth_and_structure(raw_adata):
    a = raw_adata
    import scipy.sparse as sp

    assert sp.issparse(a.X) and a.X.format == "csr"
    assert np.all(a.X.data == np.round(a.X.data)) and a.X.data.min() > 0
    sym = a.var["feature_name"]
    assert sym.str.startswith("MT-").sum() == 13
    assert sym.str.match(r"^RP[SL]\d").sum() >= 30
    for col in ("cell_type", "assay", "true_pseudotime", "is_low_quality"):
        assert col in a.obs
    assert a.obs["cell_type"].nunique() >= 8
    shares = a.obs["cell_type"].value_counts(normalize=True)
    assert shares.max() > 2 * shares.min()  # unequal proportions
    assert a.obs["assay"].nunique() == 3
    assert set(a.uns["planted_markers"]) == set(CELL_TYPES)
    for markers in a.uns["planted_markers"].values():
        assert set(markers) <= set(sym)
    traj = a.obs["true_pseudotime"].notna()
    assert set(a.obs.loc[traj, "cell_type"]) == set(TRAJECTORY)
    assert a.obs.loc[~traj, "true_pseudotime"].isna().all()
    assert 0.02 < a.obs["is_low_quality"].mean() < 0.12
    lib = np.asarray(a.X.sum(1)).ravel()
    assert np.std(np.log(lib[~a.obs["is_low_quality"].to_numpy()])) > 0.25  # library sizes vary


def test_planted_markers_are_enriched_in_their_type(adata):
    ct = adata.obs["cell_type"].to_numpy()
    for t, markers in adata.uns["planted_markers"].items():
        x = np.asarray(adata[:, markers].X.mean(axis=1)).ravel()
        assert x[ct == t].mean() > 5 * x[ct != t].mean(), t


def test_low_quality_cells_have_high_mito_and_outliers_many_genes(adata):
    scp.pp.calculate_qc_metrics(adata)
    q = adata.obs.groupby("qc_class", observed=True)[
        ["pct_counts_mt", "n_genes_by_counts"]
    ].median()
    assert q.loc["low_quality", "pct_counts_mt"] > 20 > q.loc["good", "pct_counts_mt"]
    assert q.loc["outlier", "n_genes_by_counts"] > 2 * q.loc["good", "n_genes_by_counts"]


def test_background_is_overdispersed(raw_adata):
    X = raw_adata.X[~raw_adata.obs["is_low_quality"].to_numpy()]
    mean = np.asarray(X.mean(0)).ravel()
    var = np.asarray(X.multiply(X).mean(0)).ravel() - mean**2
    hi = mean > 1
    assert np.median(var[hi] / mean[hi]) > 1.5  # negative binomial, not Poisson


def test_too_small_is_refused():
    with pytest.raises(scp.ParameterError, match="n_genes"):
        scp.datasets.synthetic_pbmc(100, 50, progress=False)


def test_cli_demo_writes_file(tmp_path):
    from scplaybook._cli import main

    out = tmp_path / "demo.h5ad"
    assert main(["demo", "--out", str(out), "--n-cells", "120", "--n-genes", "700"]) == 0
    a = scp.read(out)
    assert a.n_obs == 120 and "CD3E" in a.var_names
