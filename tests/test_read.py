import numpy as np
import pytest
import scipy.sparse as sp

import scplaybook as scp
from scplaybook import InputError, ParameterError

from ._tenx import write_h5_v2, write_h5_v3, write_mtx


@pytest.fixture
def small(raw_adata):
    a = raw_adata[:80, :400].copy()
    genes = a.var["feature_name"].astype(str).tolist()
    return a, sp.csr_matrix(a.X), genes, a.obs_names.tolist()


def _same(a, b):
    assert a.shape == b.shape
    assert list(a.var_names) == list(b.var_names)
    assert list(a.obs_names) == list(b.obs_names)
    assert (sp.csr_matrix(a.X) != sp.csr_matrix(b.X)).nnz == 0


def test_h5ad_uses_feature_name_symbols(tmp_path, small):
    a, *_ = small
    a.write_h5ad(tmp_path / "x.h5ad")
    r = scp.read(tmp_path / "x.h5ad")
    assert "CD3E" in r.var_names and r.var["gene_ids"].str.startswith("ENSSYN").all()
    assert r.X.dtype == np.float32 and sp.issparse(r.X)
    kept = scp.read(tmp_path / "x.h5ad", gene_symbols=None)
    assert kept.var_names[0].startswith("ENSSYN")


def test_all_10x_layouts_load_to_equal_objects(tmp_path, small):
    _, X, genes, bc = small
    write_h5_v3(tmp_path / "v3.h5", X, genes, bc)
    write_h5_v2(tmp_path / "v2.h5", X, genes, bc)
    write_mtx(tmp_path / "v3gz", X, genes, bc, v3=True, gz=True)
    write_mtx(tmp_path / "v3plain", X, genes, bc, v3=True, gz=False)
    write_mtx(tmp_path / "v2", X, genes, bc, v3=False, gz=False)
    write_mtx(tmp_path / "pref", X, genes, bc, v3=True, gz=True, prefix="sampleA_")
    ref = scp.read(tmp_path / "v3.h5")
    for p in ("v2.h5", "v3gz", "v3plain", "v2", "pref"):
        _same(ref, scp.read(tmp_path / p))
    assert (ref.X != X).nnz == 0


def test_several_genomes_need_a_choice(tmp_path, small):
    _, X, genes, bc = small
    write_h5_v2(tmp_path / "two.h5", X, genes, bc, genomes=("hg19", "mm10"))
    with pytest.raises(ParameterError, match=r"several genomes \(hg19, mm10\)"):
        scp.read(tmp_path / "two.h5")
    assert scp.read(tmp_path / "two.h5", genome="mm10").n_obs == X.shape[0]


def test_missing_10x_pieces_are_named(tmp_path, small):
    _, X, genes, bc = small
    write_mtx(tmp_path / "nofeat", X, genes, bc)
    (tmp_path / "nofeat" / "features.tsv.gz").unlink()
    with pytest.raises(InputError, match="features.tsv.gz"):
        scp.read(tmp_path / "nofeat")
    write_mtx(tmp_path / "nobc", X, genes, bc)
    (tmp_path / "nobc" / "barcodes.tsv.gz").unlink()
    with pytest.raises(InputError, match="barcodes.tsv.gz"):
        scp.read(tmp_path / "nobc")
    write_h5_v3(tmp_path / "noidx.h5", X, genes, bc, drop=("indices",))
    with pytest.raises(InputError, match="matrix/indices"):
        scp.read(tmp_path / "noidx.h5")


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (
            lambda p: p.write_text("<!DOCTYPE html><html><body>Access denied</body></html>"),
            "HTML page",
        ),
        (lambda p: p.write_text("cell,gene\n1,2\n"), "not a format the playbook reads"),
        (lambda p: p.mkdir(), "folder without a 10x matrix"),
    ],
)
def test_bad_files_get_one_clear_message(tmp_path, make, pattern):
    p = tmp_path / "data.h5ad"
    make(p)
    with pytest.raises(InputError, match=pattern) as e:
        scp.read(p)
    assert str(p) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        scp.read(tmp_path / "nope.h5ad")


def test_truncated_h5ad_and_h5(tmp_path, small):
    a, X, genes, bc = small
    a.write_h5ad(tmp_path / "x.h5ad")
    write_h5_v3(tmp_path / "x.h5", X, genes, bc)
    for name in ("x.h5ad", "x.h5"):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError, match="truncated or corrupt"):
            scp.read(cut)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda X: X.__setitem__((0, 0), -1), "negative values"),
        (lambda X: X.__setitem__((0, 0), 1.5), "non-integer values"),
        (lambda X: X.__setitem__((0, 0), np.nan), "NaN or infinite"),
        (lambda X: X.__setitem__((0, 0), np.inf), "NaN or infinite"),
    ],
)
def test_values_that_are_not_counts(change, pattern):
    X = np.ones((5, 4))
    change(X)
    with pytest.raises(InputError, match=pattern):
        scp.io.check_raw_counts(X, source="m.h5ad")


def test_lognormalised_and_scaled_are_named(adata):
    import scanpy as sc

    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    with pytest.raises(InputError, match="log-normalised"):
        scp.io.check_raw_counts(adata.X, source="m")
    sc.pp.scale(adata)
    with pytest.raises(InputError, match="scaled"):
        scp.io.check_raw_counts(adata.X, source="m")


def test_counts_are_found_in_raw_or_a_layer(tmp_path, small):
    """CELLxGENE keeps log-normalised X and the counts in raw.X (or a layer): 'auto' finds them."""
    import anndata as ad

    a, *_ = small
    counts = a.X.copy()
    lognorm = a.X.copy()
    lognorm.data = np.log1p(lognorm.data * 1.7)  # not integers
    cxg = ad.AnnData(X=lognorm, obs=a.obs, var=a.var)
    cxg.raw = ad.AnnData(X=counts, obs=a.obs[[]], var=a.var[[]])  # raw.var without feature_name
    cxg.write_h5ad(tmp_path / "cxg.h5ad")
    r = scp.read(tmp_path / "cxg.h5ad")
    assert (r.X != counts).nnz == 0
    assert "CD3E" in r.var_names  # the symbols from var['feature_name']
    with pytest.raises(InputError, match=r"cxg.h5ad: the matrix has non-integer values"):
        scp.read(tmp_path / "cxg.h5ad", counts="X")
    with pytest.raises(ParameterError, match=r"counts='umis' is not in .*'raw' \(present\)"):
        scp.read(tmp_path / "cxg.h5ad", counts="umis")

    layered = ad.AnnData(X=lognorm, obs=a.obs, var=a.var, layers={"counts": counts})
    layered.write_h5ad(tmp_path / "layer.h5ad")
    assert (scp.read(tmp_path / "layer.h5ad").X != counts).nnz == 0
    assert (scp.read(tmp_path / "layer.h5ad", counts="counts").X != counts).nnz == 0
    with pytest.raises(ParameterError, match=r"has no raw.X"):
        scp.read(tmp_path / "layer.h5ad", counts="raw")

    ad.AnnData(X=lognorm, obs=a.obs, var=a.var).write_h5ad(tmp_path / "none.h5ad")
    with pytest.raises(InputError, match=r"X is not raw counts: .*has no raw.X or layers"):
        scp.read(tmp_path / "none.h5ad")


def test_antibody_and_crispr_features_are_kept_aside(tmp_path, small):
    """Cell Ranger with antibodies: X holds genes only; each other type sits in obsm, reported."""
    _, X, genes, bc = small
    types = (
        ["Gene Expression"] * (len(genes) - 5)
        + ["Antibody Capture"] * 3
        + ["CRISPR Guide Capture"] * 2
    )
    names = genes[:-5] + ["CD3_TotalSeqB", "CD19_TotalSeqB", "CD14_TotalSeqB", "g1", "g2"]
    write_h5_v3(tmp_path / "abc.h5", X, names, bc, types=types)
    write_mtx(tmp_path / "abc", X, names, bc, types=types)
    for p in ("abc.h5", "abc"):
        r = scp.read(tmp_path / p)
        assert r.n_vars == len(genes) - 5 and "CD3_TotalSeqB" not in r.var_names
        ab = r.obsm["antibody_capture"]
        assert list(ab.columns) == ["CD3_TotalSeqB", "CD19_TotalSeqB", "CD14_TotalSeqB"]
        np.testing.assert_array_equal(ab.to_numpy(), X[:, -5:-2].toarray())
        assert r.obsm["crispr_guide_capture"].shape == (X.shape[0], 2)
    only_ab = ["Antibody Capture"] * len(genes)
    write_mtx(tmp_path / "ab_only", X, genes, bc, types=only_ab)
    with pytest.raises(InputError, match="no Gene Expression features"):
        scp.read(tmp_path / "ab_only")


def test_a_folder_of_several_samples_is_read_whole(tmp_path, small):
    """GEO-style folders hold one matrix per sample, told apart by a file-name prefix."""
    _, X, genes, bc = small
    write_mtx(tmp_path / "geo", X[:50], genes, bc[:50], prefix="GSM1_donorA_")
    write_mtx(tmp_path / "geo", X[50:], genes, bc[50:], prefix="GSM2_donorB_")
    r = scp.read(tmp_path / "geo")
    assert r.n_obs == X.shape[0] and (r.X != X).nnz == 0
    assert r.obs["sample"].value_counts().to_dict() == {
        "GSM1_donorA": 50,
        "GSM2_donorB": X.shape[0] - 50,
    }
    assert r.obs_names[0] == f"GSM1_donorA_{bc[0]}" and r.obs_names.is_unique
    write_mtx(tmp_path / "mixed", X[:50], genes, bc[:50], prefix="A_")
    write_mtx(tmp_path / "mixed", X[50:, :300], genes[:300], bc[50:], prefix="B_")
    with pytest.raises(InputError, match=r"do not list the same features \('B' differs from 'A'\)"):
        scp.read(tmp_path / "mixed")


def test_dense_float64_integers_are_converted(tmp_path, small):
    import anndata as ad

    a, *_ = small
    b = ad.AnnData(X=a.X.toarray().astype(np.float64), obs=a.obs, var=a.var)
    b.write_h5ad(tmp_path / "dense.h5ad")
    r = scp.read(tmp_path / "dense.h5ad")
    assert sp.issparse(r.X) and r.X.dtype == np.float32 and r.X.sum() == pytest.approx(a.X.sum())


def test_empty_matrix(tmp_path, small):
    a, *_ = small
    a[:0].copy().write_h5ad(tmp_path / "e.h5ad")
    with pytest.raises(InputError, match="empty matrix"):
        scp.read(tmp_path / "e.h5ad")


def test_duplicate_gene_names_made_unique_with_warning(tmp_path, small):
    a, *_ = small
    fn = a.var["feature_name"].astype(str).to_numpy()
    fn[1] = fn[0]
    a.var["feature_name"] = fn
    a.write_h5ad(tmp_path / "d.h5ad")
    with pytest.warns(UserWarning, match="1 duplicate gene name"):
        r = scp.read(tmp_path / "d.h5ad")
    assert r.var_names.is_unique and f"{fn[0]}-1" in r.var_names


def test_missing_symbol_column_lists_columns(tmp_path, small):
    a, *_ = small
    a.write_h5ad(tmp_path / "x.h5ad")
    with pytest.raises(ParameterError, match="columns are: .*feature_name"):
        scp.read(tmp_path / "x.h5ad", gene_symbols="gene_symbol")


def test_mouse_mt_prefix_is_recognised(adata):
    adata.var_names = [n.replace("MT-", "mt-") for n in adata.var_names]
    scp.pp.calculate_qc_metrics(adata)
    assert adata.uns["qc"]["mito_prefix"] == "mt-" and adata.var["mt"].sum() == 13
    assert adata.obs["pct_counts_mt"].median() > 1


def test_all_zero_cells_warned_all_zero_genes_kept(caplog):
    X = np.array([[0, 0, 0], [1, 0, 2], [0, 0, 0], [3, 0, 1]], dtype=float)
    with caplog.at_level("WARNING", logger="scplaybook"):
        out = scp.io.check_raw_counts(X, source="m.h5ad")
    assert "2 cell(s) have no counts at all" in caplog.text
    assert out.shape == (4, 3)  # the all-zero gene stays; filter_genes removes it later


def test_gzipped_h5ad_says_decompress_it(tmp_path, small):
    import gzip

    a = small[0]
    a.write_h5ad(tmp_path / "pbmc.h5ad")
    gz = tmp_path / "pbmc.h5ad.gz"
    gz.write_bytes(gzip.compress((tmp_path / "pbmc.h5ad").read_bytes()))
    with pytest.raises(scp.InputError, match=r"gzip-compressed: decompress it first \(gunzip -k pbmc.h5ad.gz\), then give pbmc.h5ad"):  # fmt: skip
        scp.read(gz)
    assert gz.exists()  # the user's file is left as it is
