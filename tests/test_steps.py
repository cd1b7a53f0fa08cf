"""Single steps: errors before long work, backend rules, the Harmony orientation fix."""

import numpy as np
import pandas as pd
import pytest

import scplaybook as scp
from scplaybook import BackendError, ParameterError
from scplaybook.get._device import gpu_bytes_needed
from scplaybook.pp._harmony import _harmonypy_corrected

from ._biology import preprocess


def _prep(a):
    return preprocess(a, n_top_genes=500, n_comps=None)


def test_filter_that_removes_every_cell_says_so(adata):
    scp.pp.calculate_qc_metrics(adata)
    n = adata.n_obs
    with pytest.raises(ParameterError, match="removes every one"):
        scp.pp.filter_cells(adata, min_genes=10**6)
    assert adata.n_obs == n  # data untouched
    with pytest.raises(ParameterError, match="removes every gene"):
        scp.pp.filter_genes(adata, min_cells=10**6)


def test_mad_filter_catches_planted_low_quality(adata):
    scp.pp.calculate_qc_metrics(adata)
    lq = adata.obs["is_low_quality"].to_numpy().copy()
    names = adata.obs_names.copy()
    scp.pp.filter_cells(adata, method="mad", n_mads=4)
    kept = names.isin(adata.obs_names)
    assert (~kept[lq]).mean() > 0.85 and kept[~lq].mean() > 0.95
    assert adata.uns["filter_cells"]["method"] == "mad"


def test_regress_out_matches_scanpy(adata):
    import scanpy as sc

    _prep(adata)
    ref = adata.copy()
    sc.pp.regress_out(ref, ["total_counts", "pct_counts_mt"])
    scp.pp.regress_out(adata, ["total_counts", "pct_counts_mt"])
    np.testing.assert_allclose(adata.X, ref.X, atol=2e-3, rtol=1e-3)


def test_too_many_pcs_and_neighbors(adata):
    _prep(adata)
    with pytest.raises(ParameterError, match="n_pcs=5000 is too many"):
        scp.pp.pca(adata, n_comps=5000)
    scp.pp.pca(adata, n_comps=20)
    with pytest.raises(ParameterError, match="n_pcs=40 is more than the 20 columns"):
        scp.pp.neighbors(adata, n_pcs=40)
    with pytest.raises(ParameterError, match="n_neighbors=100000"):
        scp.pp.neighbors(adata, n_neighbors=100000, n_pcs=10)


def test_harmony_unknown_key_lists_columns(adata):
    adata.obsm["X_pca"] = np.random.default_rng(0).normal(size=(adata.n_obs, 10))
    with pytest.raises(ParameterError, match="columns are: .*assay"):
        scp.pp.harmony_integrate(adata, "batch")


@pytest.mark.parametrize("transpose", [False, True])
def test_harmonypy_orientation_is_detected(transpose):
    z = np.arange(300.0).reshape(100, 3)
    out = _harmonypy_corrected(z.T if transpose else z, 100, 3)
    np.testing.assert_array_equal(out, z)


def test_scanpy_harmony_wrapper_breakage_is_real(adata):
    """scanpy's external wrapper transposes harmonypy >= 0.1 output: why we call harmonypy ourselves."""
    import scanpy as sc

    adata.obsm["X_pca"] = np.random.default_rng(0).normal(size=(adata.n_obs, 10)).astype(np.float32)
    with pytest.raises(ValueError, match=r"(?i)shape|dimension"):
        sc.external.pp.harmony_integrate(adata, "assay")
    scp.pp.harmony_integrate(adata, "assay")
    assert adata.obsm["X_pca_harmony"].shape == (adata.n_obs, 10)


def test_gpu_data_with_cpu_backend_is_refused(adata, monkeypatch):
    class FakeCupy:  # what a CuPy sparse matrix looks like to the dispatcher
        __module__ = "cupyx.scipy.sparse._csr"

    assert scp._backend.is_gpu_array(FakeCupy()) and not scp._backend.is_gpu_array(adata.X)
    monkeypatch.setattr(scp._backend, "x_on_gpu", lambda a: True)
    scp.settings.backend = "cpu"
    with pytest.raises(BackendError, match=r"scplaybook.get.to_cpu\(adata\)"):
        scp.pp.normalize_total(adata)
    adata.obsm["X_pca"] = np.zeros((adata.n_obs, 50), np.float32)
    with pytest.raises(BackendError, match="forced to 'cpu'"):
        scp.pp.neighbors(adata)


def test_tsne_method_is_checked_and_fft_needs_the_gpu(adata):
    adata.obsm["X_pca_harmony"] = np.random.default_rng(0).normal(size=(adata.n_obs, 10))
    with pytest.raises(ParameterError, match="'auto', 'barnes_hut' or 'fft'"):
        scp.tl.tsne(adata, method="exact")
    scp.settings.backend = "cpu"
    with pytest.raises(ParameterError, match="method='fft' needs the GPU"):
        scp.tl.tsne(adata, method="fft")
    assert "X_tsne" not in adata.obsm


def test_gpu_backend_without_gpu_is_explained():
    if scp.gpu_available():
        pytest.skip("a GPU is here")
    with pytest.raises(ParameterError, match="backend='gpu'.*cannot run here"):
        scp.set_backend("gpu")
    with pytest.raises(ParameterError, match="not known"):
        scp.set_backend("tpu")


def test_gpu_library_that_does_not_import_names_the_fix(monkeypatch):
    """A step on the GPU whose library does not import gets a BackendError naming the fix."""
    import sys

    from scplaybook import _backend

    monkeypatch.setitem(sys.modules, "rapids_singlecell", None)  # an import that fails
    with pytest.raises(scp.BackendError, match="does not import.*backend='cpu'"):
        _backend.gpu_library()


def test_oom_in_a_step_names_step_and_fix(adata, monkeypatch):
    import scplaybook.pp._normalize as norm

    class OutOfMemoryError(Exception):  # the name CuPy's error has
        pass

    def boom(*a, **k):
        raise OutOfMemoryError("Out of memory allocating 4,000,000,000 bytes")

    monkeypatch.setattr("scanpy.pp.scale", boom)
    _prep(adata)
    with pytest.raises(
        scp.GPUMemoryError, match=r"scale ran out of memory.*4,000,000,000 bytes.*memory-aware path"
    ):
        norm.scale(adata)


def test_timings_recorded(adata):
    _prep(adata)
    t = scp.get.timings()
    assert list(t["step"][:3]) == ["QC metrics", "filter cells", "filter genes"]
    assert (t["backend"] == "cpu").all() and (t["seconds"] >= 0).all()


def test_louvain_resolution_matters(adata):
    _prep(adata)
    scp.pp.scale(adata)
    scp.pp.pca(adata, n_comps=20)
    scp.pp.neighbors(adata, n_pcs=20)
    scp.tl.louvain(adata, resolution=0.2, key_added="lo")
    scp.tl.louvain(adata, resolution=3.0, key_added="hi")
    assert adata.obs["hi"].nunique() > adata.obs["lo"].nunique()


def test_umap_starts_from_the_graphs_first_two_pcs_and_keeps_types_apart(adata):
    from scplaybook.tl._embed import _start

    from ._biology import neighbour_label_agreement

    _prep(adata)
    scp.pp.scale(adata)
    scp.pp.pca(adata, n_comps=20)
    scp.pp.neighbors(adata, n_pcs=20)
    # the start is the graph's own representation: the Harmony graph starts from X_pca_harmony
    adata.obsm["X_pca_harmony"] = adata.obsm["X_pca"][:, ::-1].copy()
    scp.pp.neighbors(adata, n_pcs=20, use_rep="X_pca_harmony", key_added="harmony")
    for key, rep in (("neighbors", "X_pca"), ("harmony", "X_pca_harmony")):
        start = _start(adata, key, "pca", 0)
        pcs = adata.obsm[rep][:, :2] - adata.obsm[rep][:, :2].mean(axis=0)
        assert start.dtype == np.float32 and np.abs(start).max() == pytest.approx(10, abs=1e-3)
        np.testing.assert_allclose(start, pcs * 10 / np.abs(pcs).max(), atol=1e-3)
    with pytest.raises(
        ParameterError, match="'pca', 'spectral', 'random', 'paga' or a key of obsm"
    ):
        scp.tl.umap(adata, init_pos="X_pca")  # 20 columns, not 2
    assert "X_umap" not in adata.obsm
    kept = {}
    for init in ("pca", "spectral"):
        scp.tl.umap(adata, init_pos=init, key_added=f"X_umap_{init}")
        assert adata.uns[f"X_umap_{init}"]["params"]["init_pos"] == init
        kept[init] = neighbour_label_agreement(adata.obsm[f"X_umap_{init}"], adata.obs["cell_type"])
    # measured 0.949 (PCA start) and 0.948 (spectral) on the demo
    assert kept["pca"] >= 0.85 and kept["pca"] >= kept["spectral"] - 0.02, kept
    scp.tl.paga(adata, groups="cell_type")
    with pytest.raises(ParameterError, match=r"scp.pl.paga\(adata, basis=...\) first"):
        scp.tl.umap(adata, init_pos="paga")
    scp.pl.paga(adata, basis="X_umap_pca")  # scanpy's PAGA start needs the plot's positions
    scp.tl.umap(adata, init_pos="paga", key_added="X_umap_paga")
    assert adata.obsm["X_umap_paga"].shape == (adata.n_obs, 2)
    assert neighbour_label_agreement(adata.obsm["X_umap_paga"], adata.obs["cell_type"]) >= 0.85


def test_too_large_for_the_gpu_is_refused_before_moving(adata, monkeypatch):
    import scplaybook.get._device as dev

    monkeypatch.setattr(dev, "resolve_backend", lambda: "gpu")
    monkeypatch.setattr(dev, "free_gpu_bytes", lambda: 10 * 1024**2)
    monkeypatch.setattr(dev, "gpu_name", lambda: "Test GPU")
    need = gpu_bytes_needed(adata)
    assert need > 3 * adata.X.nnz * 8
    with pytest.raises(
        scp.GPUMemoryError,
        match=r"need about .* GiB.* even in row chunks; 0.0 GiB are free on Test GPU.*fewer cells",
    ):
        scp.get.to_gpu(adata)
    assert not scp._backend.x_on_gpu(adata)


def test_first_gpu_run_says_it_compiles(tmp_path, monkeypatch, caplog):
    from scplaybook.runner._run import _say_if_first_compile

    monkeypatch.setenv("CUPY_CACHE_DIR", str(tmp_path / "cupy"))
    assert _say_if_first_compile()
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "kern.cubin").write_bytes(b"x")
    assert not _say_if_first_compile()


def test_pca_from_the_covariance_matches_scanpy(adata):
    import scanpy as sc

    from scplaybook.pp._pca import pca_from_gram

    _prep(adata)
    scp.pp.scale(adata)
    sc.pp.pca(adata, n_comps=15, svd_solver="full")
    X = np.asarray(adata.X, dtype=np.float32)
    scores, pcs, _, ratio = pca_from_gram(X, 15)
    np.testing.assert_allclose(ratio, adata.uns["pca"]["variance_ratio"], rtol=1e-3)
    for k in range(15):  # same components, up to sign
        c = np.corrcoef(scores[:, k], adata.obsm["X_pca"][:, k])[0, 1]
        assert abs(c) > 0.999, (k, c)
    assert (pcs[np.abs(pcs).argmax(axis=0), np.arange(15)] > 0).all()


def test_version_of_a_checkout_without_install(tmp_path, monkeypatch):
    import importlib.metadata as md

    from scplaybook._settings import package_version

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "version", missing)
    assert package_version() == "0.1.0+checkout"  # read from the checkout's pyproject.toml


def test_mad_cutoffs_have_a_floor_when_most_cells_have_no_mito_reads(adata):
    scp.pp.calculate_qc_metrics(adata)
    pct = adata.obs["pct_counts_mt"].to_numpy().copy()
    rng = np.random.default_rng(0)
    pct[:] = 0.0  # as in real PBMCs where most cells show no mitochondrial read: MAD 0
    few = rng.choice(adata.n_obs, adata.n_obs // 5, replace=False)
    pct[few] = rng.uniform(0.1, 2.0, few.size)  # a few reads: healthy cells
    adata.obs["pct_counts_mt"] = pct
    n = adata.n_obs
    scp.pp.filter_cells(adata, method="mad", n_mads=5)
    # without the floor the cut-off is 0 % and removes every cell with one mitochondrial read
    assert adata.uns["filter_cells"]["max_pct_mt"] >= 5.0
    assert adata.n_obs > 0.9 * n


def test_barcodes_without_counts_do_not_empty_the_mad_filter(adata):
    """Barcodes with no count have pct_counts_mt NaN: a real 10k mouse file lost every cell to it."""
    X = adata.X.tocsr(copy=True)
    X.data[: X.indptr[30]] = 0  # empty droplets among the cells
    X.eliminate_zeros()
    adata.X = X
    scp.pp.calculate_qc_metrics(adata)
    assert adata.obs["pct_counts_mt"].isna().sum() == 30
    n = adata.n_obs
    scp.pp.filter_cells(adata, method="mad", n_mads=5)
    assert n - 30 >= adata.n_obs > 0.9 * n
    assert adata.obs["total_counts"].min() > 0


def test_nan_batches_labels_and_bad_numbers_refused_before_the_long_steps(adata):
    from scplaybook.runner import check_params

    base = {"batch_key": "assay", "label_key": "cell_type", "resolution": 0.6, "perplexity": 30}
    check_params(adata, base)  # the demo's columns pass
    a = adata.copy()
    a.obs["assay"] = a.obs["assay"].astype(object)
    a.obs.iloc[:7, a.obs.columns.get_loc("assay")] = np.nan
    with pytest.raises(ParameterError, match=r"batch_key='assay': 7 of \d+ cells have no value"):
        check_params(a, base)
    a = adata.copy()
    a.obs["cell_type"] = a.obs["cell_type"].cat.add_categories(["x"])
    a.obs.iloc[:3, a.obs.columns.get_loc("cell_type")] = np.nan
    with pytest.raises(ParameterError, match="label_key='cell_type': 3 of"):
        check_params(a, base)
    for bad in ({"resolution": 0}, {"resolution": -1}, {"perplexity": 0}, {"resolution": "high"}):
        with pytest.raises(ParameterError, match="must be a number above 0"):
            check_params(adata, {**base, **bad})
    with pytest.raises(ParameterError, match="needs more than 1801 cells for t-SNE"):
        check_params(adata, {**base, "perplexity": 600})


def test_auto_parameters_fit_the_data_and_say_what_they_chose(adata, caplog):
    """'auto' takes a batch/label column when one can serve, else runs without it; never fails."""
    from scplaybook.runner import check_params

    auto = {"batch_key": "auto", "label_key": "auto", "dpt_root": "auto", "dpt_groups": "auto"}
    p = check_params(adata, auto)  # the demo's own columns and declared lineage
    assert (p["batch_key"], p["label_key"]) == ("assay", "cell_type")
    assert p["dpt_root"] == "CD14 Monocyte" and p["dpt_groups"] == ["CD14 Monocyte", "Macrophage"]
    a = adata.copy()
    a.obs["sample"] = np.where(np.arange(a.n_obs) % 2, "s1", "s2")  # before assay in the order
    a.obs["batch"] = "one"  # a single value cannot be corrected for: skipped
    with caplog.at_level("INFO", logger="scplaybook"):
        assert check_params(a, auto)["batch_key"] == "sample"
    assert (
        "obs['batch'] has 1 values" in caplog.text
        and "batch_key='auto': obs['sample']" in caplog.text
    )
    bare = adata.copy()
    bare.obs = bare.obs[[]]
    bare.uns.pop("synthetic", None)
    p = check_params(bare, auto)
    assert p["batch_key"] is None and p["label_key"] is None
    assert p["dpt_root"] == "auto" and p["dpt_groups"] is None  # tl.dpt picks the root
    withnan = adata.copy()
    withnan.obs["cell_type"] = withnan.obs["cell_type"].cat.add_categories(["x"])
    withnan.obs.iloc[:3, withnan.obs.columns.get_loc("cell_type")] = np.nan
    p = check_params(withnan, auto)  # 'auto' passes over a column with empty values
    assert p["label_key"] is None and p["dpt_groups"] is None
    with pytest.raises(ParameterError, match="label_key='donor_type' is not a column of obs"):
        check_params(adata, {**auto, "label_key": "donor_type"})  # named, not there: said at load


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "pynndescent"])
def test_cpu_neighbors_of_8192_cells_and_more(exact, monkeypatch):
    """From 8192 cells scanpy's own choice is pynndescent (its 0.7 broke scanpy: sparse arrays);
    the playbook searches exactly up to EXACT_KNN_MAX cells, as the GPU does."""
    import anndata as ad
    from sklearn.neighbors import NearestNeighbors

    from scplaybook.pp import _neighbors

    if not exact:
        monkeypatch.setattr(_neighbors, "EXACT_KNN_MAX", 1000)
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=20, size=(4, 10))
    blob = np.repeat(np.arange(4), 2050)
    a = ad.AnnData(np.zeros((blob.size, 1), np.float32))
    a.obsm["X_pca"] = (centres[blob] + rng.normal(size=(blob.size, 10))).astype(np.float32)
    scp.set_backend("cpu")
    scp.pp.neighbors(a, n_neighbors=15, n_pcs=10, use_rep="X_pca")
    d = a.obsp["distances"].tocsr()
    per_row = np.diff(d.indptr)
    assert (per_row >= 14).all()  # 15 neighbours, the cell itself included (scanpy#3809: 16 stored)
    rows = np.repeat(np.arange(blob.size), per_row)
    assert (blob[d.indices] == blob[rows]).mean() > 0.999
    if exact:  # the 14 nearest other cells of each, exactly
        _, idx = NearestNeighbors(n_neighbors=15).fit(a.obsm["X_pca"]).kneighbors()
        got = [set(d.indices[d.indptr[i] : d.indptr[i + 1]]) for i in range(0, blob.size, 97)]
        assert all(set(idx[i, :14]) <= g for i, g in zip(range(0, blob.size, 97), got, strict=True))


def test_dpt_takes_a_cluster_number_and_finds_a_root_by_itself():
    """A root given as the number 0 means cluster "0"; root_group="auto" starts at a lineage end."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 10, 600))
    emb = np.column_stack([t, np.sin(t / 3), rng.normal(scale=0.05, size=(t.size, 8))])
    a = ad.AnnData(np.zeros((t.size, 1), np.float32))
    a.obsm["X_pca_harmony"] = emb.astype(np.float32)
    a.obs["leiden"] = pd.Categorical(np.digitize(t, [10 / 3, 20 / 3]).astype(str))
    scp.set_backend("cpu")
    scp.tl.dpt(a, groupby="leiden", root_group=0, n_dcs=3)  # before: "dpt group 0 is not in"
    root = a.obs_names.get_loc(a.uns["dpt"]["root_cell"])
    assert a.uns["dpt"]["root_group"] == "0" and t[root] < 10 / 3
    assert a.obs["dpt_pseudotime"].iloc[root] == 0
    scp.tl.dpt(a, groupby="leiden", root_group="auto", n_dcs=3)
    root = a.obs_names.get_loc(a.uns["dpt"]["root_cell"])
    assert min(t[root], 10 - t[root]) < 0.5  # the cell at one end of the line
    assert a.uns["dpt"]["root_group"] == a.obs["leiden"].iloc[root]


def test_a_gene_panel_keeps_every_gene_and_a_harsh_filter_warns(adata, caplog):
    """Small panels: n_top_genes above the genes left takes them all; keeping < 10 % warns."""
    a = adata[:, :300].copy()
    scp.pp.calculate_qc_metrics(a)
    with caplog.at_level("WARNING", logger="scplaybook"):
        scp.pp.filter_cells(a, min_genes=int(np.quantile(a.obs["n_genes_by_counts"], 0.95)))
    assert "filter_cells keeps only" in caplog.text and "lower min_genes" in caplog.text
    b = adata[:, :300].copy()
    scp.pp.calculate_qc_metrics(b)
    scp.pp.filter_cells(b, min_genes=None)
    scp.pp.filter_genes(b, min_cells=3)
    scp.pp.normalize_total(b)
    scp.pp.log1p(b)
    scp.pp.highly_variable_genes(b, n_top_genes=2000, keep_raw=False)
    assert b.n_vars == (b.var["highly_variable"]).sum() > 250


def test_paga_equals_scanpys(adata):
    """Our sparse-product PAGA gives scanpy's connectivities, tree and group sizes."""
    import scanpy as sc

    scp.set_backend("cpu")
    a = adata[:, :500].copy()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    sc.pp.pca(a, n_comps=15)
    sc.pp.neighbors(a, n_neighbors=10)
    a.obs["type"] = a.obs["cell_type"].astype(str)  # not categorical: made so, as scanpy does
    ref = a.copy()
    scp.tl.paga(a, groups="type")
    sc.tl.paga(ref, groups="type")
    assert isinstance(a.obs["type"].dtype, pd.CategoricalDtype)
    for k in ("connectivities", "connectivities_tree"):
        ours, theirs = a.uns["paga"][k], ref.uns["paga"][k]
        assert ours.nnz > 0 and ours.nnz == theirs.nnz, k
        np.testing.assert_allclose(ours.toarray(), theirs.toarray(), rtol=1e-12, err_msg=k)
    np.testing.assert_array_equal(a.uns["type_sizes"], ref.uns["type_sizes"])
    assert a.uns["paga"]["groups"] == "type"
    with pytest.raises(ParameterError, match="no neighbor graph 'harmony'"):
        scp.tl.paga(a, groups="type", neighbors_key="harmony")
