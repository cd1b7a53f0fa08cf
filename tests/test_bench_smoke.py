"""The benchmark script runs end to end at CPU size, so that it does not rot."""

import json
import re
import sys
from pathlib import Path

import pytest

from ._proc import run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_benchmark_smoke(tmp_path):
    # cold runs only (--repeats 0): the machinery, not the timings, is what CI checks
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--smoke", "--out", str(tmp_path),
           "--repeats", "0"]  # fmt: skip
    p = run(cmd, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    for pipe in ("reference", "ours"):
        cold = res["results"][pipe]["cold"]
        assert cold["total"] > 0 and {"PCA", "Harmony", "t-SNE", "logreg DE"} <= set(cold["steps"])
    md = (tmp_path / "results.md").read_text()
    assert "| total |" in md and "ARI between reference and ours" in md
    # compare_runs.py on two of the per-run files: same data, so same clusters and PCA subspace.
    runs = [sorted(tmp_path.glob(f"{pipe}-*.json"))[0] for pipe in ("reference", "ours")]
    cmp = run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_runs.py"), *map(str, runs)], timeout=300
    )
    assert cmp.returncode == 0, cmp.stderr[-3000:]
    ari = float(re.search(r"ARI between \S+ and \S+: ([\d.]+)", cmp.stdout).group(1))
    cos_min = float(re.search(r"principal angles min ([\d.]+)", cmp.stdout).group(1))
    assert ari >= 0.9 and cos_min >= 0.99, cmp.stdout
    assert re.search(r"Preprocessing \(load through PCA\): [\d.]+ s and [\d.]+ s", cmp.stdout)


@pytest.mark.slow
def test_benchmark_smoke_of_the_users_command(tmp_path):
    """``--pipelines notebook``: the headless run end to end, each section and the runner's work timed."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--smoke", "--out", str(tmp_path),
           "--pipelines", "notebook", "--repeats", "0"]  # fmt: skip
    p = run(cmd, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    cold = json.loads((tmp_path / "results.json").read_text())["results"]["notebook"]["cold"]
    steps = cold["steps"]
    assert list(steps)[:2] == [
        "runner start (Python, imports; kernel booting)",
        "kernel start (the rest)",
    ]
    assert list(steps)[-3:] == [
        "between cells (papermill's saves)",
        "papermill's end",
        "report, checksums, zip",
    ]
    assert {"PCA: scp.pp.pca", "Differential expression: scp.tl.rank_genes_groups",
            "Differential expression: scp.pl.marker_genes", "Save the results: run.save"} <= set(steps)  # fmt: skip
    # each section from the command's own clock and papermill's stamps (a time zone misread
    # would make one negative); the kernel is stopped, not waited for, after the last cell
    assert all(v >= 0 for v in steps.values()), steps
    assert steps["papermill's end"] < 2.0 and steps["report, checksums, zip"] > 0
    assert cold["results_mb"]["adata.h5ad"] > 1 and 0 < cold["results_gb"] < 1
    assert "Results folder of notebook:" in (tmp_path / "results.md").read_text()
    # inside the cells: every step and plot with its time (the run's timings.json)
    assert re.search(r"\| plot umap_after_harmony \| cpu \| [\d.]+ \|", p.stdout)
    assert re.search(r"\| rank genes groups \| cpu \| [\d.]+ \|", p.stdout)
    recall = re.search(r"planted doublets found: recall ([\d.]+), precision ([\d.]+)", p.stdout)
    # about 670 cells per assay here: Scrublet finds few (the demo's bars are in _biology.py)
    found = [float(x) for x in recall.groups()] if recall else []
    assert found and all(0 < x <= 1 for x in found), p.stdout[-2000:]


@pytest.mark.slow
def test_benchmark_smoke_on_a_dask_cluster(tmp_path):
    """``--dask-workers``: ours on a LocalCluster (dask-cuda's LocalCUDACluster on GPUs)."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--smoke", "--out", str(tmp_path),
           "--pipelines", "ours", "--repeats", "0", "--dask-workers", "2", "--chunk-cells", "700", "--task-stream"]  # fmt: skip
    p = run(cmd, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    cold = json.loads((tmp_path / "results.json").read_text())["results"]["ours"]["cold"]
    assert {"regress out", "scale", "PCA", "Harmony", "gather X", "logreg DE"} <= set(cold["steps"])
    assert (
        "Dask cluster of 2 workers (tcp), row chunks of 700 cells"
        in (tmp_path / "results.md").read_text()
    )
    assert "PCA from the covariance, over 3 row chunks" in p.stderr
    # --task-stream: each step's compute seconds on each of the two workers
    assert "| step | wall s | tasks | compute w0 | compute w1 | transfer s | busy |" in p.stdout
    pca = re.search(r"^\| PCA \| [\d.]+ \| (\d+) \|", p.stdout, re.M)
    assert pca and int(pca.group(1)) >= 3, p.stdout[-2000:]


@pytest.mark.slow
def test_profile_dask_steps_prints_every_step():
    """benchmarks/profile_dask_steps.py on the demo data with two CPU workers."""
    import scplaybook as scp

    cmd = [sys.executable, str(ROOT / "benchmarks" / "profile_dask_steps.py"),
           str(scp.datasets.demo_path()), "--workers", "2", "--n-top-genes", "500"]  # fmt: skip
    p = run(cmd, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    walls = dict(re.findall(r"^===== (.+): ([\d.]+) s$", p.stdout, re.M))
    assert list(walls) == ["to GPU", "QC", "filter", "normalize + log1p", "HVG + raw + subset",
                           "regress out", "scale", "PCA"]  # fmt: skip
    assert "_chunks.py" in p.stdout  # our chunked functions show in the listing
