"""The biology a run must recover from the demo dataset, shared by the CPU and GPU tests."""

from __future__ import annotations

import anndata as ad
from scipy.stats import spearmanr
from sklearn.metrics import adjusted_rand_score

import scplaybook as scp


def check_biology(result: ad.AnnData) -> None:
    """Assert clusters, batch mixing, markers, pseudotime and QC against the ground truth."""
    ari = adjusted_rand_score(result.obs["cell_type"], result.obs["leiden_harmony"])
    assert ari >= 0.8, f"Leiden (Harmony) vs cell_type ARI {ari:.3f}"
    sep = neighbour_label_agreement(result.obsm["X_tsne"], result.obs["cell_type"])
    assert sep >= 0.9, f"t-SNE: {sep:.3f} of 15 nearest neighbours share the cell type"
    mix = result.uns["batch_mixing"]
    assert mix["harmony"] > mix["neighbors"] + 0.15, mix
    assert mix["neighbors"] < 0.45, mix  # uncorrected neighbourhoods are dominated by one assay
    for method in ("wilcoxon", "logreg"):
        top = scp.get.markers(result, key=f"rank_genes_groups_{method}", n_genes=10)
        for cell_type, planted in result.uns["planted_markers"].items():
            found = set(top.loc[top["group"] == cell_type, "gene"]) & set(planted)
            assert len(found) >= 3, (method, cell_type, found)
    m = result.obs["true_pseudotime"].notna()
    rho = spearmanr(
        result.obs.loc[m, "dpt_pseudotime"], result.obs.loc[m, "true_pseudotime"]
    ).statistic
    assert rho >= 0.9, f"DPT vs true pseudotime Spearman {rho:.3f}"
    raw = ad.read_h5ad(scp.datasets.demo_path(), backed="r").obs
    kept = raw.index.isin(result.obs_names)
    lq, dbl = raw["is_low_quality"].to_numpy(), raw["is_doublet"].to_numpy()
    assert (~kept[lq]).mean() >= 0.9 and kept[~lq & ~dbl].mean() >= 0.95
    # planted doublets: Scrublet's calls (removed) against the truth, among cells that passed QC
    removed = raw.index.isin(result.uns["filter_doublets"]["removed"])
    recall = removed[dbl & (kept | removed)].mean()
    precision = dbl[removed].mean()
    assert recall >= 0.65 and precision >= 0.8, (  # measured: CPU 0.91 / 0.91, GPU 0.72 / 0.87
        f"doublets: recall {recall:.2f}, precision {precision:.2f}"
    )
    # cluster labels from the shipped marker table against the true cell types
    labelled = (
        result.obs["cell_type_predicted"].astype(str) == result.obs["cell_type"].astype(str)
    ).mean()
    assert labelled >= 0.9, f"{labelled:.1%} of cells labelled with their true type"


def neighbour_label_agreement(emb, labels, k: int = 15) -> float:
    """Mean share of each cell's ``k`` nearest neighbours in ``emb`` that carry its label."""
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k + 1).fit(emb).kneighbors(emb, return_distance=False)
    lab = np.asarray(labels)
    return float((lab[idx[:, 1:]] == lab[:, None]).mean())


def preprocess(adata: ad.AnnData, *, n_top_genes: int = 2000, n_comps: int | None = 20):
    """The recipe's QC, filters, normalisation and HVG; then regress out, scale and PCA."""
    from scplaybook._recipe import STEP_NAMES, run

    last = "PCA" if n_comps else "HVG + raw + subset"
    only = STEP_NAMES[: STEP_NAMES.index(last) + 1]
    return run(adata, {"n_top_genes": n_top_genes, "n_comps": n_comps or 50}, only=only)
