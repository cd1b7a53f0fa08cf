"""Benchmark: the original playbook's recipe vs scplaybook's pipeline, each in a fresh process, cold and warm.

    python benchmarks/bench.py --cells 200000 --genes 20000 --out bench-out      # on a GPU machine
    python benchmarks/bench.py --smoke --out /tmp/bench                          # CPU, small: CI

cold = a new, empty CuPy/numba kernel cache for that process; warm = the cache one earlier run of the
same pipeline left (median of --repeats runs). Import time is reported apart. Writes results.json and
results.md into --out and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path


class Clock:
    """Per-step wall times; GPU work is synchronised before a step's clock stops.

    After every step the times so far are written to ``partial`` (JSON), so that a run stopped at
    the time cap still reports the steps it finished.
    """

    def __init__(self, gpu: bool, partial: Path | None = None, stop_after: str | None = None):
        self.gpu, self.steps, self.partial, self.stop_after = gpu, {}, partial, stop_after
        self.adata, self.spans = None, []

    @contextlib.contextmanager
    def step(self, name: str):
        t0, wall0 = time.perf_counter(), time.time()
        yield
        if self.gpu:
            import cupy

            cupy.cuda.Device().synchronize()
        self.steps[name] = self.steps.get(name, 0.0) + time.perf_counter() - t0
        self.spans.append((name, wall0, time.time()))
        if self.partial:
            self.partial.write_text(json.dumps({"steps": self.steps, "stopped": True}))
        if name == self.stop_after:
            raise StopPipeline


class StopPipeline(Exception):
    """Raised by :class:`Clock` after the step named by ``--stop-after``."""


def _rmm_pool() -> None:
    """The RMM pool allocator for CuPy, as the original notebook sets it (both pipelines use it)."""
    import cupy as cp
    import rmm
    from rmm.allocators.cupy import rmm_cupy_allocator

    rmm.reinitialize(managed_memory=False, pool_allocator=True, devices=0)
    cp.cuda.set_allocator(rmm_cupy_allocator)


def reference(path: str, gpu: bool, clock: Clock) -> None:
    """The original NVIDIA/scverse notebook's calls and parameters (rapids-singlecell; scanpy on CPU)."""
    import scanpy as sc

    if gpu:
        import cupy as cp
        import rapids_singlecell as rsc

        _rmm_pool()
        lib = rsc
    else:
        lib = sc
    with clock.step("load"):
        adata = sc.read(path)
    if gpu:
        with clock.step("to GPU"):
            rsc.get.anndata_to_GPU(adata)
    with clock.step("QC"):
        adata.var_names = adata.var.feature_name.astype(str).to_numpy()
        if gpu:
            rsc.pp.flag_gene_family(adata, gene_family_name="MT", gene_family_prefix="MT")
            rsc.pp.flag_gene_family(adata, gene_family_name="RIBO", gene_family_prefix="RPS")
            rsc.pp.calculate_qc_metrics(adata, qc_vars=["MT", "RIBO"])
        else:
            adata.var["MT"] = adata.var_names.str.startswith("MT")
            adata.var["RIBO"] = adata.var_names.str.startswith("RPS")
            sc.pp.calculate_qc_metrics(
                adata, qc_vars=["MT", "RIBO"], inplace=True, percent_top=None
            )
    with clock.step("filter"):
        adata = adata[adata.obs["n_genes_by_counts"] < 5000]
        adata = adata[adata.obs["pct_counts_MT"] < 20]
        if gpu:
            rsc.pp.filter_genes(adata, min_cells=3)
        else:
            adata = adata.copy()
            sc.pp.filter_genes(adata, min_cells=3)
    with clock.step("normalize + log1p"):
        lib.pp.normalize_total(adata, target_sum=1e4)
        lib.pp.log1p(adata)
    with clock.step("HVG + raw + subset"):
        lib.pp.highly_variable_genes(adata, n_top_genes=5000, flavor="cell_ranger")
        adata.raw = adata
        if gpu:
            rsc.pp.filter_highly_variable(adata)
        else:
            adata = adata[:, adata.var.highly_variable].copy()
    with clock.step("regress out"):
        lib.pp.regress_out(adata, keys=["total_counts", "pct_counts_MT"])
    with clock.step("scale"):
        lib.pp.scale(adata, max_value=10)
    with clock.step("PCA"):
        (rsc.tl.pca if gpu else sc.pp.pca)(adata, n_comps=100)
    if gpu:
        with clock.step("to CPU"):
            rsc.get.anndata_to_CPU(adata)
    with clock.step("kNN + UMAP"):
        lib.pp.neighbors(adata, n_neighbors=15, n_pcs=40)
        lib.tl.umap(adata)
    with clock.step("Louvain"):
        if gpu:
            rsc.tl.louvain(adata, resolution=0.6)
        else:
            sc.tl.louvain(adata, resolution=0.6, flavor="igraph")
    with clock.step("Leiden"):
        lib.tl.leiden(
            adata, resolution=0.6, **({} if gpu else {"flavor": "igraph", "n_iterations": 2})
        )
    with clock.step("Harmony"):
        if gpu:
            rsc.pp.harmony_integrate(adata, key="assay", dtype=cp.float32)
        else:
            import harmonypy
            import numpy as np

            ho = harmonypy.run_harmony(adata.obsm["X_pca"], adata.obs, ["assay"], verbose=False)
            adata.obsm["X_pca_harmony"] = np.asarray(ho.Z_corr)
    with clock.step("kNN/UMAP/clusters (Harmony)"):
        lib.pp.neighbors(
            adata, n_neighbors=15, n_pcs=40, use_rep="X_pca_harmony", key_added="harmony"
        )
        lib.tl.umap(adata, neighbors_key="harmony", key_added="X_umap_harmony")
        if gpu:
            rsc.tl.louvain(
                adata, resolution=0.6, neighbors_key="harmony", key_added="louvain_harmony"
            )
            rsc.tl.leiden(
                adata, resolution=0.6, neighbors_key="harmony", key_added="leiden_harmony"
            )
        else:
            sc.tl.louvain(
                adata,
                resolution=0.6,
                neighbors_key="harmony",
                key_added="louvain_harmony",
                flavor="igraph",
            )
            sc.tl.leiden(
                adata,
                resolution=0.6,
                neighbors_key="harmony",
                key_added="leiden_harmony",
                flavor="igraph",
                n_iterations=2,
            )
    with clock.step("t-SNE"):
        lib.tl.tsne(
            adata,
            n_pcs=40,
            perplexity=30,
            early_exaggeration=12,
            learning_rate=200,
            use_rep="X_pca_harmony",
        )
    with clock.step("logreg DE"):
        if gpu:
            rsc.tl.rank_genes_groups_logreg(adata, groupby="cell_type", use_raw=False)
        else:
            sc.tl.rank_genes_groups(adata, groupby="cell_type", use_raw=False, method="logreg")
    with clock.step("diffmap"):
        lib.tl.diffmap(adata, neighbors_key="harmony")
    return adata


def ours(path: str, gpu: bool, clock: Clock, chunk_cells: int | None = None) -> None:
    """The same steps and parameters through scplaybook (what the playbook notebook calls)."""
    import scplaybook as scp
    from scplaybook._chunks import is_dask
    from scplaybook._recipe import ORIGINAL
    from scplaybook._recipe import STEP_NAMES as RECIPE_STEPS
    from scplaybook._recipe import run as run_recipe

    scp.set_backend("gpu" if gpu else "cpu")
    with clock.step("load"):
        adata = scp.read(path, check_counts=False, chunk_cells=chunk_cells)
    clock.adata = adata  # what --stop-after reports on
    if gpu:
        with clock.step("to GPU"):
            scp.get.to_gpu(adata)
    # the playbook's recipe with the original notebook's parameters; DE by logreg only, as there
    only = [n for n in RECIPE_STEPS if n != "Wilcoxon DE" and (n != "gather X" or is_dask(adata.X))]
    run_recipe(adata, ORIGINAL, only=only, step=clock.step)
    return adata


def notebook(path: str, gpu: bool, clock: Clock) -> None:
    """The user's command end to end: ``python -m scplaybook run --data FILE``, in its own process.

    The wall time runs from starting the command to its exit (the results folder complete).
    Steps: the runner's start (Python, its imports, the parameters read; the kernel, started
    first, boots meanwhile) up to papermill's start, the rest of the kernel's start up to the first
    cell, the notebook's code cells (papermill's durations), named by their section's header and
    first ``scp`` call, papermill's saves between cells, papermill's end after the last cell, and
    the runner's work after papermill (report, checksums, zip, while the kernel is stopped).
    Returns no AnnData (the kernel held it).
    """
    import nbformat

    from scplaybook.runner import _run as runner

    out = Path(tempfile.mkdtemp(prefix="nb-run-"))
    cmd = [sys.executable, "-m", "scplaybook", "run", "--data", str(path), "--out", str(out),
           "--param", f"backend={'gpu' if gpu else 'cpu'}"]  # fmt: skip
    t_start = time.time()
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    clock.wall = time.time() - t_start
    t_end = t_start + clock.wall
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    nb = nbformat.read(run_dir / runner.NOTEBOOK_NAME, as_version=4)

    def when(stamp: str) -> float:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

    section, spans = "parameters", []
    steps: dict[str, float] = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("#"):
            section = re.split(r" — |, | \(", cell.source.splitlines()[0].lstrip("# "))[0][:36]
        meta = cell.metadata.get("papermill", {})
        if cell.cell_type != "code" or not meta.get("start_time"):
            continue
        spans.append((when(meta["start_time"]), when(meta["end_time"])))
        call = re.search(r"\b(?:scp|run)\.[\w.]*\w", cell.source)  # a cell by its first call
        name = f"{section}: {call.group(0)}" if call else section
        steps[name] = steps.get(name, 0.0) + meta["duration"]
    pm = nb.metadata.papermill
    pm_start, pm_end = when(pm["start_time"]), when(pm["end_time"])
    clock.steps = {
        "runner start (Python, imports; kernel booting)": pm_start - t_start,
        "kernel start (the rest)": spans[0][0] - pm_start,
        **steps,
        "between cells (papermill's saves)": sum(
            b[0] - a[1] for a, b in zip(spans[:-1], spans[1:], strict=True)
        ),
        "papermill's end": pm_end - spans[-1][1],
        "report, checksums, zip": t_end - pm_end,
    }
    clock.size_gb = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file()) / 1e9
    clock.sizes = {
        f.name: round(f.stat().st_size / 1e6, 1) for f in run_dir.iterdir() if f.is_file()
    }
    # inside the cells: each scp step and plot, as the run's own timing table has them
    calls = json.loads((run_dir / "timings.json").read_text())
    print("| step in the notebook (timings.json) | backend | s |\n| --- | --- | --- |")
    for c in calls:
        print(f"| {c['step']} | {c['backend']} | {c['seconds']:.2f} |")
    print(f"| sum | | {sum(c['seconds'] for c in calls):.2f} |", flush=True)
    clock.doublets = _doublet_recall(path, run_dir / "adata.h5ad")
    if clock.doublets:
        print(
            "planted doublets found: recall {recall:.3f}, precision {precision:.3f}".format(
                **clock.doublets
            )
        )
    shutil.rmtree(out, ignore_errors=True)


def _doublet_recall(data: str, results: Path) -> dict | None:
    """Recall and precision of the run's doublet calls on the generator's planted doublets."""
    import anndata as ad
    import h5py

    truth = ad.read_h5ad(data, backed="r").obs.get("is_doublet")
    with h5py.File(results, "r") as f:
        if truth is None or "uns/filter_doublets/removed" not in f:
            return None
        removed = set(ad.io.read_elem(f["uns/filter_doublets/removed"]).astype(str))
        kept = ad.io.read_elem(f["obs"]).index
    scored = truth[truth.index.isin(kept) | truth.index.isin(list(removed))]
    planted = set(scored.index[scored.to_numpy(dtype=bool)])
    found = len(planted & removed)
    return {"recall": found / max(len(planted), 1), "precision": found / max(len(removed), 1)}


def _top_markers(adata, key: str, n: int = 10) -> dict[str, list[str]]:
    import pandas as pd

    names = pd.DataFrame(adata.uns[key]["names"])
    return {str(g): names[g].astype(str).tolist()[:n] for g in names.columns}


class PeakMemory:
    """Peak GPU memory in use on the devices (what nvidia-smi shows, summed), sampled every 20 ms.

    Device-wide, so it counts memory pools at their reserved size and the CUDA contexts (also of
    Dask workers on other GPUs), and it works whatever allocator a pipeline sets up.
    """

    def __init__(self):
        import threading

        import cupy

        self.cupy, self.peak, self.stop = cupy, 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        devices = [self.cupy.cuda.Device(d) for d in range(self.cupy.cuda.runtime.getDeviceCount())]
        while not self.stop.wait(0.02):
            used = 0
            for device in devices:
                with device:
                    free, total = self.cupy.cuda.runtime.memGetInfo()
                used += total - free
            self.peak = max(self.peak, used)

    def gib(self) -> float:
        self.stop.set()
        self.thread.join()
        return self.peak / 2**30


def task_table(tasks: list[dict], spans: list[tuple[str, float, float]]) -> str:
    """Where each step's time went on the Dask workers: compute and transfer seconds per worker.

    From ``distributed.get_task_stream``; ``busy`` is the share of the step's wall time that the
    busiest worker spent computing (low: the step waits on this process or the scheduler).
    """
    workers = sorted({t["worker"] for t in tasks})
    head = ["step", "wall s", "tasks", *[f"compute w{i}" for i in range(len(workers))]]
    head += ["transfer s", "busy"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, t0, t1 in spans:
        compute, moved, n = dict.fromkeys(workers, 0.0), 0.0, 0
        for t in tasks:
            for ss in t["startstops"]:
                a, b = max(ss["start"], t0), min(ss["stop"], t1)
                if b <= a:
                    continue
                if ss["action"] == "compute":
                    compute[t["worker"]] += b - a
                    n += ss["start"] >= t0
                elif ss["action"] == "transfer":
                    moved += b - a
        wall = t1 - t0
        busy = max(compute.values(), default=0.0) / wall if wall else 0.0
        cells = [name, f"{wall:.2f}", str(n), *[f"{compute[w]:.2f}" for w in workers]]
        rows.append("| " + " | ".join([*cells, f"{moved:.2f}", f"{busy:.0%}"]) + " |")
    return "\n".join(rows)


def worker(args) -> None:
    t0 = time.perf_counter()
    import scanpy  # noqa: F401

    if args.gpu:
        import cupy  # noqa: F401
        import rapids_singlecell  # noqa: F401
    import scplaybook  # noqa: F401

    imports = time.perf_counter() - t0
    client = None
    if args.dask_workers:  # started before the clock, as a notebook's set-up cell does
        import scplaybook as scp

        scp.set_backend("gpu" if args.gpu else "cpu")
        client = scp.start_dask(args.dask_workers, protocol=args.dask_protocol)
    clock = Clock(args.gpu, Path(args.json), args.stop_after)
    memory = PeakMemory() if args.gpu else None
    stream = contextlib.nullcontext()
    if client is not None and args.task_stream:
        from distributed import get_task_stream

        stream = get_task_stream(client)
    t1 = time.perf_counter()
    with stream as tasks:
        try:
            if args.worker == "reference":
                adata = reference(args.data, args.gpu, clock)
            elif args.worker == "notebook":
                adata = notebook(args.data, args.gpu, clock)
            else:
                adata = ours(args.data, args.gpu, clock, chunk_cells=args.chunk_cells)
        except StopPipeline:  # ours changes its AnnData in place
            adata = clock.adata
    total = getattr(clock, "wall", None) or time.perf_counter() - t1  # notebook: the command's wall
    if tasks is not None:
        print(task_table(tasks.data, clock.spans))
    if client is not None:
        client.close()
        client.cluster.close()
    peak = memory.gib() if memory else None
    if adata is None:  # the notebook pipeline: its AnnData lived in the kernel
        Path(args.json).write_text(json.dumps({"import": imports, "total": total, "steps": clock.steps,
                                               "peak_gpu_gib": peak, "results_gb": clock.size_gb,
                                               "results_mb": clock.sizes,
                                               "doublets": getattr(clock, "doublets", None)}))  # fmt: skip
        return
    leiden = "leiden_harmony" if "leiden_harmony" in adata.obs else "leiden"
    labels = adata.obs[leiden].astype(str).tolist() if leiden in adata.obs else []
    key = next((k for k in adata.uns if str(k).startswith("rank_genes_groups")), None)
    if "PCs" in adata.varm:  # loadings of the first 40 PCs, for compare_runs.py's subspace check
        import numpy as np

        np.save(Path(args.json).with_suffix(".pcs.npy"), np.asarray(adata.varm["PCs"][:, :40]))
    Path(args.json).write_text(json.dumps({"import": imports, "total": total, "steps": clock.steps, "leiden": labels,
                                           "obs_names": adata.obs_names.tolist(), "peak_gpu_gib": peak,
                                           "var_names": adata.var_names.tolist(),
                                           "markers": _top_markers(adata, key) if key else {},
                                           "leiden_key": leiden}))  # fmt: skip


def run_one(
    pipeline: str,
    data: Path,
    gpu: bool,
    cache: Path,
    out: Path,
    timeout: float,
    extra=(),
    *,
    own_numba_cache: bool = True,
) -> dict | None:
    """Run one pipeline in its own process with the kernel caches under ``cache``.

    ``own_numba_cache=False`` (``--smoke``) leaves numba's cache where the caller has it: a smoke
    run checks the machinery, and compiling the CPU steps' numba functions again in every run
    (UMAP's and pynndescent's above all) was most of its time.
    """
    env = {**os.environ, "CUPY_CACHE_DIR": str(cache / "cupy")}
    if own_numba_cache:
        env["NUMBA_CACHE_DIR"] = str(cache / "numba")
    js = out / f"{pipeline}-{time.time_ns()}.json"
    cmd = (
        [
            sys.executable,
            __file__,
            "--worker",
            pipeline,
            "--data",
            str(data),
            "--json",
            str(js),
        ]
        + (["--gpu"] if gpu else [])
        + list(extra)
    )
    try:
        subprocess.run(cmd, env=env, check=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"{pipeline}: stopped at the {timeout:.0f} s cap", file=sys.stderr)
        if not js.exists():
            return None
        partial = json.loads(js.read_text())
        return {"import": float("nan"), "total": float("nan"), **partial}
    return json.loads(js.read_text())


def _agreement(a: dict, b: dict, names: tuple[str, str]) -> str:
    """Leiden ARI and top-10 logreg marker overlap between two runs (markers where both ran DE)."""
    from sklearn.metrics import adjusted_rand_score

    common = sorted(set(a["obs_names"]) & set(b["obs_names"]))
    la = dict(zip(a["obs_names"], a["leiden"], strict=True))
    lb = dict(zip(b["obs_names"], b["leiden"], strict=True))
    ari = adjusted_rand_score([la[c] for c in common], [lb[c] for c in common])
    which = (
        "Leiden (Harmony)"
        if a.get("leiden_key", "leiden_harmony") == "leiden_harmony"
        else "Leiden"
    )
    text = f"{which} ARI between {names[0]} and {names[1]}: {ari:.3f} on {len(common)} common cells"
    overlap = {g: len(set(a["markers"][g]) & set(b["markers"].get(g, []))) for g in a["markers"]}
    if not overlap:
        return text + " (no differential expression in these runs)\n"
    return (
        f"{text}; top-10 logreg markers shared per group: {min(overlap.values())}-"
        f"{max(overlap.values())} of 10 (mean {statistics.mean(overlap.values()):.1f})\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cells", type=int, default=200_000)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=3, help="warm runs per pipeline (median)")
    p.add_argument("--pipelines", default="reference,ours")
    p.add_argument("--out", type=Path, default=Path("bench-out"))
    p.add_argument("--cap", type=float, default=1800, help="seconds before a run is stopped")
    p.add_argument(
        "--scanpy-cap",
        type=float,
        default=0,
        help="also run the recipe with scanpy on the CPU cores, stopped after this many seconds",
    )
    p.add_argument(
        "--cache-root",
        type=Path,
        help="keep each pipeline's kernel cache in DIR/cache-PIPELINE; a cache found non-empty "
        "there makes every run warm (no cold run)",
    )
    p.add_argument(
        "--dask-workers",
        type=int,
        default=0,
        help="run ours on a Dask cluster of this many workers (dask-cuda: one per GPU), started "
        "before the clock",
    )
    p.add_argument(
        "--dask-protocol", default="tcp", help="the Dask cluster's protocol: tcp, or ucx (GPU)"
    )
    p.add_argument("--chunk-cells", type=int, help="ours reads X in row chunks of this many cells")
    p.add_argument(
        "--task-stream",
        action="store_true",
        help="with --dask-workers: print where each step's time went on the workers",
    )
    p.add_argument(
        "--stop-after",
        help="end ours after this step (e.g. Leiden: preprocessing and the first clustering)",
    )
    p.add_argument("--smoke", action="store_true", help="small CPU run (CI)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU is")
    (
        p.add_argument("--worker"),
        p.add_argument("--data"),
        p.add_argument("--json"),
        p.add_argument("--gpu", action="store_true"),
    )
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    import scplaybook as scp

    gpu = scp.gpu_available() and not (args.cpu or args.smoke)
    if args.smoke:
        args.cells, args.genes, args.repeats = 2000, 5000, min(args.repeats, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / f"synthetic_{args.cells}x{args.genes}.h5ad"
    if not data.exists():
        t = time.perf_counter()
        nnz = scp.datasets.write_synthetic_h5ad(
            data, args.cells, args.genes, device="gpu" if gpu else "cpu"
        )
        print(
            f"generated and written {args.cells} x {args.genes} ({nnz} non-zeros) in {time.perf_counter() - t:.1f} s"
        )
    results: dict[str, dict] = {}
    extra = (
        (
            ["--dask-workers", str(args.dask_workers), "--dask-protocol", args.dask_protocol]
            if args.dask_workers
            else []
        )
        + (["--chunk-cells", str(args.chunk_cells)] if args.chunk_cells else [])
        + (["--stop-after", args.stop_after] if args.stop_after else [])
        + (["--task-stream"] if args.task_stream else [])
    )
    if args.stop_after and "reference" in args.pipelines.split(","):
        p.error("--stop-after works with --pipelines ours only")
    for pipe in args.pipelines.split(","):
        if args.cache_root:
            cache = args.cache_root / f"cache-{pipe}"
            cache.mkdir(parents=True, exist_ok=True)
        else:
            cache = Path(tempfile.mkdtemp(prefix=f"cache-{pipe}-"))
        warm_already = any(cache.rglob("*"))
        own = not args.smoke
        cold = (
            None
            if warm_already
            else run_one(pipe, data, gpu, cache, args.out, args.cap, extra, own_numba_cache=own)
        )
        warm = [
            r
            for r in (
                run_one(pipe, data, gpu, cache, args.out, args.cap, extra, own_numba_cache=own)
                for _ in range(args.repeats)
            )
            if r
        ]
        results[pipe] = {"cold": cold, "warm": warm}
    cpu_run = None
    if args.scanpy_cap and gpu:
        cache = Path(tempfile.mkdtemp(prefix="cache-scanpy-"))
        cpu_run = run_one("reference", data, False, cache, args.out, args.scanpy_cap)
    steps = []
    for r in [cpu_run] + [
        r for pipe in results for r in [results[pipe]["cold"], *results[pipe]["warm"]]
    ]:
        if r:
            steps += [s for s in r["steps"] if s not in steps]

    def med(pipe, state, key):
        runs = [results[pipe]["cold"]] if state == "cold" else results[pipe]["warm"]
        vals = [
            (r["steps"].get(key, float("nan")) if key not in ("total", "import") else r[key])
            for r in runs
            if r
        ]
        return statistics.median(vals) if vals else float("nan")

    pipes = list(results)
    states = [s for s in ("cold", "warm") if any(results[p][s] for p in pipes)]  # runs that ran
    cols = [f"{p} {s}" for s in states for p in pipes] + (["scanpy CPU"] if cpu_run else [])
    ratios = len(pipes) == 2
    head = (
        "| step | " + " | ".join(cols + ([f"ratio {s}" for s in states] if ratios else [])) + " |"
    )
    rows = [head, "|" + " --- |" * (head.count("|") - 1)]
    for key in [*steps, "total", "import"]:
        vals = [med(p, s, key) for s in states for p in pipes]
        if cpu_run:
            vals.append(cpu_run["steps"].get(key, cpu_run.get(key, float("nan"))))
        cells = ["–" if v != v else f"{v:.2f}" for v in vals]  # nan: a step this run has not
        if ratios:
            cells += [
                f"{vals[2 * i] / vals[2 * i + 1]:.2f}"
                if vals[2 * i + 1] and vals[2 * i + 1] == vals[2 * i + 1]
                else ""
                for i in range(len(states))
            ]
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    notes = ""
    if len(pipes) == 2 and all(
        results[p]["cold"] and "leiden" in results[p]["cold"] for p in pipes
    ):
        notes += _agreement(results[pipes[0]]["cold"], results[pipes[1]]["cold"], tuple(pipes))
    for pipe in pipes:
        peaks = [
            r.get("peak_gpu_gib") for r in [results[pipe]["cold"], *results[pipe]["warm"]] if r
        ]
        if any(peaks):
            notes += (
                f"Peak GPU memory in use on the device during {pipe} (sampled every 20 ms; memory "
                f"pools count at their reserved size): {max(x for x in peaks if x):.1f} GiB\n"
            )
    for pipe in pipes:
        sizes = [
            r for r in [results[pipe]["cold"], *results[pipe]["warm"]] if r and "results_gb" in r
        ]
        if sizes:
            r = sizes[-1]
            big = ", ".join(
                f"{k} {v:.0f} MB"
                for k, v in sorted(r["results_mb"].items(), key=lambda kv: -kv[1])[:3]
            )
            notes += f"Results folder of {pipe}: {r['results_gb']:.2f} GB ({big})\n"
    if cpu_run:
        ours = "ours" if "ours" in pipes else pipes[-1]
        both = [
            k
            for k in cpu_run["steps"]
            if k not in ("load", "to GPU", "to CPU") and k in results[ours]["warm"][0]["steps"]
        ]
        gpu_s = sum(med(ours, "warm", k) for k in both)
        cpu_s = sum(cpu_run["steps"][k] for k in both)
        state = (
            f"stopped at the {args.scanpy_cap:.0f} s cap" if cpu_run.get("stopped") else "finished"
        )
        notes += (
            f"scanpy on {os.cpu_count()} CPU cores ({state}): the {len(both)} compute steps both finished "
            f"take {cpu_s:.1f} s on the CPU and {gpu_s:.2f} s with {ours} warm on the GPU: {cpu_s / gpu_s:.0f}x\n"
        )
    device = scp.gpu_name() if gpu else f"CPU ({os.cpu_count()} cores)"
    md = (
        f"{args.cells} cells x {args.genes} genes on {device}; seconds (warm: median of {args.repeats})"
        + (
            f"; ours on a Dask cluster of {args.dask_workers} workers ({args.dask_protocol})"
            if args.dask_workers
            else ""
        )
        + (f", row chunks of {args.chunk_cells} cells" if args.chunk_cells else "")
        + "\n\n"
        + "\n".join(rows)
        + "\n\n"
        + notes
    )
    for r in [cpu_run] + [
        r for pipe in results for r in [results[pipe]["cold"], *results[pipe]["warm"]]
    ]:
        if r:
            for big in ("leiden", "obs_names", "var_names"):
                r.pop(big, None)
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "device": device,
                "cells": args.cells,
                "genes": args.genes,
                "results": results,
                "scanpy_cpu": cpu_run,
            },
            indent=1,
        )
    )
    (args.out / "results.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
