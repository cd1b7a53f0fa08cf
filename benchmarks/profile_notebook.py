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


if __name__ == "__main__":
    main()
