"""Profile the notebook's cells in one process: where each slow cell spends its time.

    python benchmarks/profile_notebook.py DATA.h5ad [--min-s 0.5] [--top 14] [--scrublet]

Runs the code cells of ``scRNA_analysis_preprocessing.ipynb`` in order (``data_path`` set to
DATA, the other parameters as in the notebook), each under :mod:`cProfile`, and prints for every
cell slower than ``--min-s`` its wall time and the functions with the most cumulative time.
GPU work is asynchronous: its time shows where the host waits for it. ``--scrublet`` then times
our Scrublet against rapids-singlecell's on the same filtered data. A tool for choosing what to
speed up, not a benchmark (``bench.py --pipelines notebook`` is the benchmark).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent.parent / "scRNA_analysis_preprocessing.ipynb"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("data")
    p.add_argument("--min-s", type=float, default=0.5)
    p.add_argument("--top", type=int, default=14)
    p.add_argument("--out", default="/tmp/profile-notebook-run")
    p.add_argument("--scrublet", action="store_true")
    p.add_argument("--umap", action="store_true", help="then time UMAP's parts on both graphs")
    args = p.parse_args()
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    ns: dict = {}
    for i, cell in enumerate(cells):
        src = "".join(cell["source"])
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            src += f"\ndata_path = {args.data!r}\noutput_dir = {args.out!r}\n"
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        exec(compile(src, f"<cell {i}>", "exec"), ns)
        prof.disable()
        _sync()
        wall = time.perf_counter() - t0
        head = src.strip().splitlines()[0][:70]
        print(f"\n=== cell {i}: {wall:.2f} s  {head}", flush=True)
        if wall >= args.min_s:
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(args.top)
            lines = out.getvalue().splitlines()
            start = next(k for k, line in enumerate(lines) if "ncalls" in line)
            print("\n".join(line[:160] for line in lines[start : start + args.top + 1]))
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(8)
            lines = out.getvalue().splitlines()
            start = next(k for k, line in enumerate(lines) if "ncalls" in line)
            print("\n".join(line[:160] for line in lines[start + 1 : start + 9]))
    if args.scrublet:
        compare_scrublet(args.data)
    if args.umap:
        compare_umap(ns["adata"])


def _sync() -> None:
    try:
        import cupy as cp

        cp.cuda.Device().synchronize()
    except Exception:  # noqa: BLE001 - no GPU: nothing to wait for
        pass


def compare_scrublet(data: str) -> None:
    """Time our GPU Scrublet and rapids-singlecell's on the same filtered counts (twice each)."""
    import numpy as np
    import rapids_singlecell as rsc

    import scplaybook as scp

    scp.set_backend("gpu")
    a = scp.read(data)
    scp.get.to_gpu(a)
    scp.pp.calculate_qc_metrics(a)
    scp.pp.filter_cells(a)
    key = "assay" if "assay" in a.obs else None
    ratio = scp.pp._doublets._auto_ratio(a, key)
    for rep in range(2):
        ours, ref = a.copy(), a.copy()
        t0 = time.perf_counter()
        scp.pp.scrublet(ours, batch_key=key, sim_doublet_ratio=ratio, random_state=0)
        _sync()
        t1 = time.perf_counter()
        rsc.pp.scrublet(ref, batch_key=key, sim_doublet_ratio=ratio, rng=0, verbose=False)
        _sync()
        t2 = time.perf_counter()
        same = np.mean(
            ours.obs["predicted_doublet"].to_numpy() == ref.obs["predicted_doublet"].to_numpy(bool)
        )
        r = np.corrcoef(ours.obs["doublet_score"], ref.obs["doublet_score"].astype(float))[0, 1]
        print(
            f"scrublet run {rep + 1}: ours {t1 - t0:.2f} s, rapids-singlecell {t2 - t1:.2f} s; "
            f"same calls {same:.4f}, score correlation {r:.4f}",
            flush=True,
        )


def compare_umap(adata) -> None:
    """Where cuML's UMAP spends its time on the notebook's two graphs, and what the start changes.

    For each graph: its connected components, the layout with the spectral start and 1 epoch
    (the start's cost), with a random start and 1 epoch, the full 200 epochs from each start and
    from the first two principal components; each layout's share of cells whose 15 nearest cells
    in 2-D have the same cell type (higher: types kept apart).
    """
    import cupy as cp
    import cupyx.scipy.sparse
    import numpy as np
    import rapids_singlecell  # noqa: F401
    from cuml.manifold.umap import find_ab_params, simplicial_set_embedding
    from cuml.neighbors import NearestNeighbors
    from scipy.sparse.csgraph import connected_components

    labels = adata.obs["cell_type"].astype(str).to_numpy() if "cell_type" in adata.obs else None
    a, b = find_ab_params(1.0, 0.5)

    def kept(emb) -> float:
        if labels is None:
            return float("nan")
        idx = NearestNeighbors(n_neighbors=16).fit(emb).kneighbors(emb)[1]
        idx = cp.asnumpy(idx)[:, 1:]
        return float(np.mean(labels[idx] == labels[:, None]))

    for key, rep in (("neighbors", "X_pca"), ("harmony", "X_pca_harmony")):
        g = adata.obsp[adata.uns[key]["connectivities_key"]]
        g = g.get() if hasattr(g, "get") else g  # the host graph, wherever it is
        n_comp = connected_components(g, directed=False)[0]
        coo = cupyx.scipy.sparse.coo_matrix(g.tocoo())
        pcs = np.asarray(adata.obsm[rep])[:, :2]
        start = (10 * (pcs - pcs.mean(0)) / np.abs(pcs).max()).astype(np.float32)
        print(f"\nUMAP on {key!r}: {adata.n_obs} cells, {g.nnz} edges, {n_comp} components")
        for init, epochs in (("spectral", 1), ("random", 1), ("spectral", 200), ("random", 200),
                             ("pca", 200), ("spectral", 200)):  # fmt: skip
            _sync()
            t0 = time.perf_counter()
            emb = simplicial_set_embedding(
                data=cp.zeros((adata.n_obs, 1), dtype=cp.float32), graph=coo, n_components=2,
                initial_alpha=1.0, a=a, b=b, negative_sample_rate=5, n_epochs=epochs,
                init=start if init == "pca" else init, random_state=0,
            )  # fmt: skip
            _sync()
            dt = time.perf_counter() - t0
            q = kept(cp.asarray(emb)) if epochs > 1 else float("nan")
            print(
                f"  start {init:8s} epochs {epochs:3d}: {dt:.2f} s; same type among 15 NN {q:.3f}"
            )


if __name__ == "__main__":
    main()
