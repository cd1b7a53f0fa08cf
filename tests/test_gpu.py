"""The same notebook on the GPU (rapids-singlecell): the same biology, and agreement with the CPU run.

Run on a GPU machine with ``pytest -m gpu``; skipped elsewhere.
"""

import anndata as ad
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import scplaybook as scp

from ._biology import check_biology

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    gpu = scp.runner.run_playbook(out=out, params={"backend": "gpu"}, progress=False)
    cpu = scp.runner.run_playbook(out=out, params={"backend": "cpu"}, progress=False)
    return ad.read_h5ad(gpu / "adata.h5ad"), ad.read_h5ad(cpu / "adata.h5ad"), gpu


def test_gpu_run_used_the_gpu(runs):
    import json

    _, _, gpu_dir = runs
    prov = json.loads((gpu_dir / "provenance.json").read_text())
    assert prov["backend"] == "gpu" and prov["gpu"]
    timings = json.loads((gpu_dir / "timings.json").read_text())
    on_gpu = {t["step"].split(" (")[0] for t in timings if t["backend"] == "gpu"}
    assert {"PCA", "neighbors", "umap", "leiden", "harmony", "t-SNE", "rank genes groups"} <= on_gpu


def test_gpu_biology(runs):
    check_biology(runs[0])


def test_gpu_cpu_concordance(runs):
    g, c, _ = runs
    assert list(g.obs_names) == list(c.obs_names)  # same QC decisions
    ari = adjusted_rand_score(g.obs["leiden_harmony"], c.obs["leiden_harmony"])
    assert ari >= 0.8, ari
    for method in ("wilcoxon", "logreg"):
        tg = scp.get.markers(g, key=f"rank_genes_groups_{method}", n_genes=10)
        tc = scp.get.markers(c, key=f"rank_genes_groups_{method}", n_genes=10)
        overlap = [
            len(set(tg.loc[tg.group == k, "gene"]) & set(tc.loc[tc.group == k, "gene"])) / 10
            for k in tg.group.unique()
        ]
        assert np.mean(overlap) >= 0.7, (method, overlap)
