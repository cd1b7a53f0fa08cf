"""Profile scplaybook's GPU pipeline step by step, and time alternatives for its slowest steps.

    python benchmarks/profile_steps.py DATA.h5ad [--out profile.json]

For every step: seconds and the number of GPU kernels compiled into the CuPy cache during it
(run with an empty ``CUPY_CACHE_DIR`` to see where a cold run compiles). Then, on the final data:
Louvain at several modularity thresholds, t-SNE (Barnes-Hut vs FFT) and logistic-regression DE at
several iteration limits, each with its agreement with the default. A tool for choosing, not a
benchmark: ``bench.py`` is the benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def _cache_files() -> int:
    d = Path(os.environ.get("CUPY_CACHE_DIR", Path.home() / ".cupy" / "kernel_cache"))
    return sum(1 for _ in d.rglob("*")) if d.exists() else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("data")
    p.add_argument("--out", type=Path, default=Path("profile.json"))
    p.add_argument("--steps-only", action="store_true", help="no alternatives")
    p.add_argument(
        "--check-chunked",
        action="store_true",
        help="compare the chunked path with the in-memory one",
    )
    args = p.parse_args()
    if args.check_chunked:
        check_chunked(args.data)
        return
    import cupy as cp
    import numpy as np
    import pandas as pd
    import rapids_singlecell as rsc
    from sklearn.metrics import adjusted_rand_score

    import scplaybook as scp
    from scplaybook._recipe import ORIGINAL, STEP_NAMES
    from scplaybook._recipe import run as run_recipe

    rows = []

    def step(name, fn, *a, **k):
        n0, t0 = _cache_files(), time.perf_counter()
        out = fn(*a, **k)
        cp.cuda.Device().synchronize()
        rows.append({"step": name, "s": time.perf_counter() - t0, "compiled": _cache_files() - n0})
        print(f"{name:42s} {rows[-1]['s']:7.2f} s  {rows[-1]['compiled']:4d} kernels", flush=True)
        return out

    scp.set_backend("gpu")
    a = step("read", scp.read, args.data, check_counts=False)
    step("to GPU", scp.get.to_gpu, a)
    for name in STEP_NAMES:  # the recipe with the original notebook's parameters, step by step
        step(name, run_recipe, a, ORIGINAL, only=[name])

    if args.steps_only:
        args.out.write_text(json.dumps({"steps": rows}, indent=1))
        return
    variants = []
    base = a.obs["louvain"].to_numpy()
    for thr in (1e-7, 1e-6, 1e-5, 1e-4, 1e-3):
        t0 = time.perf_counter()
        rsc.tl.louvain(a, resolution=0.6, neighbors_key="harmony", threshold=thr, key_added="lv")
        dt = time.perf_counter() - t0
        ari = adjusted_rand_score(base, a.obs["lv"])
        variants.append({"what": f"louvain threshold {thr:g}", "s": dt, "ari_vs_ours": ari,
                         "ari_vs_truth": adjusted_rand_score(a.obs["cell_type"], a.obs["lv"])})  # fmt: skip
    for lvl in (100, 10, 3):
        t0 = time.perf_counter()
        rsc.tl.louvain(a, resolution=0.6, neighbors_key="harmony", n_iterations=lvl, key_added="lv")
        variants.append({"what": f"louvain max_level {lvl}", "s": time.perf_counter() - t0,
                         "ari_vs_truth": adjusted_rand_score(a.obs["cell_type"], a.obs["lv"])})  # fmt: skip
    from cuml.manifold import TSNE
    from sklearn.neighbors import NearestNeighbors

    X = np.asarray(a.obsm["X_pca_harmony"][:, :40], dtype=np.float32)
    sample = np.random.default_rng(0).choice(X.shape[0], 5000, replace=False)
    hi = NearestNeighbors(n_neighbors=16).fit(X).kneighbors(X[sample], return_distance=False)
    for method in ("barnes_hut", "fft"):
        for n_iter in (1000, 500):
            t0 = time.perf_counter()
            emb = TSNE(n_neighbors=90, perplexity=30, early_exaggeration=12, learning_rate=200,
                       random_state=0, method=method, max_iter=n_iter).fit_transform(X)  # fmt: skip
            dt = time.perf_counter() - t0
            emb = emb.get() if hasattr(emb, "get") else np.asarray(emb)
            lo = (
                NearestNeighbors(n_neighbors=16)
                .fit(emb)
                .kneighbors(emb[sample], return_distance=False)
            )
            keep = np.mean([len(set(h[1:]) & set(q[1:])) / 15 for h, q in zip(hi, lo, strict=True)])
            variants.append(
                {"what": f"t-SNE {method} n_iter {n_iter}", "s": dt, "knn_preserved": keep}
            )
    ref = None
    for it in (1000, 200, 100, 50):
        t0 = time.perf_counter()
        rsc.tl.rank_genes_groups_logreg(a, "cell_type", use_raw=False, max_iter=it, key_added="lr")
        dt = time.perf_counter() - t0
        top = pd.DataFrame(a.uns["lr"]["names"]).head(10)
        ref = top if ref is None else ref
        shared = np.mean([len(set(top[g]) & set(ref[g])) for g in top.columns])
        variants.append({"what": f"logreg max_iter {it}", "s": dt, "top10_shared_vs_1000": shared})
    step("to CPU (for saving)", scp.get.to_cpu, a)
    for v in variants:
        print(json.dumps(v), flush=True)
    args.out.write_text(json.dumps({"steps": rows, "variants": variants}, indent=1))


def check_chunked(path: str) -> None:
    """Preprocess ``path`` in one piece and in row chunks on the GPU; print how far they agree."""
    import numpy as np

    import scplaybook as scp

    scp.set_backend("gpu")
    out = {}
    for chunked in (False, True):
        t0 = time.perf_counter()
        a = scp.read(path, check_counts=False)
        scp.get.to_gpu(a, chunked=chunked)
        scp.pp.calculate_qc_metrics(a)
        scp.pp.filter_cells(a, min_genes=None, max_genes=5000, max_pct_mt=20)
        scp.pp.filter_genes(a, min_cells=3)
        scp.pp.normalize_total(a, target_sum=1e4)
        scp.pp.log1p(a)
        scp.pp.highly_variable_genes(a, n_top_genes=5000)
        scp.pp.regress_out(a, keys=["total_counts", "pct_counts_mt"])
        scp.pp.scale(a, max_value=10)
        scp.pp.pca(a, n_comps=50)
        print(f"chunked={chunked}: {time.perf_counter() - t0:.1f} s", flush=True)
        out[chunked] = (a.obs_names.copy(), a.var_names.copy(), np.asarray(a.obsm["X_pca"]))
        del a
    (o0, v0, p0), (o1, v1, p1) = out[False], out[True]
    q0, q1 = np.linalg.qr(p0[:, :20])[0], np.linalg.qr(p1[:, :20])[0]
    cos = np.linalg.svd(q0.T @ q1, compute_uv=False)
    print(
        f"same cells: {o0.equals(o1)}; same HVGs: {v0.equals(v1)}; "
        f"PCA subspace (20 PCs) smallest cosine: {cos.min():.6f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
