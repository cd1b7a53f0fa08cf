"""The whole notebook, headless, on the demo data: biology recovered and every result file written."""

import json
import zipfile
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest

import scplaybook as scp
from scplaybook._cli import main

from ._biology import check_biology

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The CPU demo, its figures drawn by a worker process as on a machine of 4 cores or more."""
    out = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCPLAYBOOK_FIGURE_WORKERS", "1")  # the kernel's setting
        return scp.runner.run_playbook(out=out, params={"backend": "cpu"}, progress=False)


@pytest.fixture(scope="module")
def result(run_dir):
    return ad.read_h5ad(run_dir / "adata.h5ad")


def test_the_notebook_shows_the_saved_pictures(run_dir):
    """Each figure is drawn once (by a worker): the notebook's image outputs are the PNG files
    saved, every one of them, no placeholder left; the timing table has each plot as a step."""
    import base64

    import nbformat

    nb = nbformat.read(run_dir / "scRNA_analysis_preprocessing.ipynb", as_version=4)
    shown = [
        base64.b64decode(o["data"]["image/png"])
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    saved = {p.read_bytes() for p in (run_dir / "figures").glob("*.png")}
    assert len(shown) >= 15 and set(shown) == saved
    assert "drawing figures/" not in json.dumps(nb)
    steps = [t["step"] for t in json.loads((run_dir / "timings.json").read_text())]
    assert {"plot umap_after_harmony", "plot markers_dotplot", "plot qc_before_filtering"} <= set(
        steps
    )


def test_all_results_present_and_readable(run_dir):
    assert (run_dir / "STATUS").read_text().startswith("succeeded")
    assert not list(run_dir.glob(".*.part*"))  # the notebook written as it ran, renamed at the end
    for name in (
        "scRNA_analysis_preprocessing.ipynb",
        "report.html",
        "adata.h5ad",
        "markers.csv",
        "SHA256SUMS",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    timings = json.loads((run_dir / "timings.json").read_text())
    steps = {t["step"].split(" (")[0] for t in timings}
    assert {"harmony", "t-SNE", "DPT pseudotime", "PAGA", "rank genes groups"} <= steps
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert (
        prov["backend"] == "cpu"
        and prov["versions"]["scanpy"]
        and len(prov["input"]["sha256"]) == 64
    )
    assert prov["parameters"]["n_neighbors"] == 15
    figs = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert {"qc_before_filtering", "umap_before_harmony", "umap_after_harmony", "tsne", "paga", "dpt_pseudotime",
            "batch_mixing", "timings"} <= figs  # fmt: skip
    for p in (run_dir / "figures").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with zipfile.ZipFile(run_dir / f"{run_dir.name}.zip") as z:
        names = z.namelist()
        assert z.testzip() is None
        assert z.getinfo(f"{run_dir.name}/figures/tsne.png").compress_type == zipfile.ZIP_STORED
    assert f"{run_dir.name}/adata.h5ad" in names and f"{run_dir.name}/figures/tsne.png" in names
    html = (run_dir / "report.html").read_text()
    assert "Harmony" in html and "data:image/png;base64" in html
    nb = json.loads((run_dir / "scRNA_analysis_preprocessing.ipynb").read_text())
    assert not [
        o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    markers = pd.read_csv(run_dir / "markers.csv")
    assert set(markers["method"]) == {"logreg", "wilcoxon"}


def test_biology_recovered(result):
    check_biology(result)


def test_saved_file_has_scanpys_keys(result):
    """A scanpy user's own calls work on adata.h5ad as it is."""
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    assert "umap" in result.uns and "X_umap" not in result.uns
    assert result.uns["rank_genes_groups"]["params"]["method"] == "wilcoxon"
    sc.pl.rank_genes_groups(result, n_genes=3, show=False)
    sc.pl.umap(result, color="leiden", show=False)
    # the raw counts of the cells and genes kept, as scanpy's tutorials keep them
    src = scp.read(scp.datasets.demo_path())
    rows = src.obs_names.get_indexer(result.obs_names)
    cols = src.var_names.get_indexer(result.var_names)
    assert (rows >= 0).all() and (cols >= 0).all()
    assert (result.layers["counts"] != src.X[rows][:, cols]).nnz == 0
    assert result.layers["counts"].dtype == "uint16"  # counts in the narrowest type that holds them


def test_saved_x_is_log_normalised_and_sparse(result):
    """Not the dense scaled matrix (1.6 GB at 200k cells): the log-normalised values, as raw has them."""
    import numpy as np
    import scipy.sparse as sp

    assert sp.issparse(result.X) and result.raw is not None
    assert result.uns["X_is"].startswith("log-normalised")
    cols = result.raw.var_names.get_indexer(result.var_names)
    assert (result.X != result.raw.X[:, cols]).nnz == 0
    # log1p of counts scaled to 10,000 per cell over all genes kept
    np.testing.assert_allclose(np.expm1(result.raw.X).sum(axis=1).A1, 1e4, rtol=1e-3)
    # the counts and the log-normalised values are the same cells' same genes
    assert ((result.layers["counts"] > 0) != (result.X > 0)).nnz == 0


def test_a_second_run_never_touches_the_first(run_dir, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    with pytest.raises(scp.ParameterError, match="unknown parameter"):
        scp.runner.run_playbook(out=run_dir.parent, params={"n_neighbours": 10})
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before
    assert [p for p in run_dir.parent.iterdir() if p.is_dir()] == [run_dir]


def test_a_refused_parameter_leaves_no_kernel_behind(tmp_path):
    """The kernel boots while the runner checks the parameters: a refused one stops it."""
    import os

    def kernels() -> set[str]:
        found = set()
        for d in Path("/proc").iterdir():
            try:
                state, ppid = (d / "stat").read_text().rsplit(")", 1)[1].split()[:2]
                cmd = (d / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if ppid == str(os.getpid()) and state != "Z" and b"ipykernel" in cmd:
                found.add(d.name)
        return found

    before = kernels()
    with pytest.raises(scp.ParameterError, match="n_neighbours"):
        scp.runner.run_playbook(out=tmp_path, params={"n_neighbours": 10})
    assert kernels() == before
    assert not list(tmp_path.iterdir())  # no run folder either


def _one_cell_notebook(folder, source: str):
    """Write a notebook of one code cell for the Python 3 kernel; return its path."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_the_runner_works_inside_a_running_event_loop(tmp_path):
    """``run_playbook`` called from a Jupyter cell (an asyncio loop is running there) starts its
    kernel as nbclient does, not with ``asyncio.run``, which refuses a running loop."""
    import asyncio

    import nbformat

    path = _one_cell_notebook(tmp_path, "print(6 * 7)")

    async def from_a_cell():
        return scp.runner.run_playbook(notebook=path, out=tmp_path / "out", progress=False)

    run = asyncio.run(from_a_cell())
    assert (run / "STATUS").read_text().startswith("succeeded")
    cell = nbformat.read(run / "scRNA_analysis_preprocessing.ipynb", as_version=4).cells[-1]
    assert cell.outputs[0]["text"] == "42\n"


def test_failed_cell_marks_run_failed(tmp_path, capsys):
    code = main(["run", "--out", str(tmp_path), "--param", "batch_key=donor"])
    assert code == 1
    err = capsys.readouterr().err
    assert "batch_key='donor' is not a column of obs" in err and "assay" in err
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert (run / "STATUS").read_text().startswith("failed")
    assert "batch_key='donor'" in (run / "error.txt").read_text()
    nb = json.loads((run / "scRNA_analysis_preprocessing.ipynb").read_text())
    assert any(o.get("output_type") == "error" for c in nb["cells"] for o in c.get("outputs", []))
    assert not (run / "adata.h5ad").exists()


def test_cli_rejects_missing_data(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path), "--data", str(tmp_path / "none.h5ad")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert list(Path(tmp_path).iterdir()) == []


def test_flipped_bytes_in_results_are_caught(run_dir, tmp_path):
    import shutil

    import h5py

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert scp.io.verify_checksum(copy / "adata.h5ad")
    assert scp.read(copy / "adata.h5ad", check_counts=False).n_obs > 0
    with h5py.File(copy / "adata.h5ad", "r") as f:
        offset = f["obsm"]["X_pca"].id.get_offset() + 1000  # inside the data, not the metadata
    data = bytearray((copy / "adata.h5ad").read_bytes())
    data[offset] ^= 0x40
    (copy / "adata.h5ad").write_bytes(bytes(data))
    import anndata

    anndata.read_h5ad(copy / "adata.h5ad")  # HDF5 itself does not notice
    with pytest.raises(scp.InputError, match="does not match the SHA-256 recorded"):
        scp.read(copy / "adata.h5ad", check_counts=False)


def test_own_data_with_the_defaults_alone(tmp_path, raw_adata):
    """A user's file with one batch and no labels, only --data: every "auto" default fits it."""
    own = raw_adata.copy()
    own.obs = own.obs[[]]  # nothing but barcodes
    own.write_h5ad(tmp_path / "own.h5ad")
    run = scp.runner.run_playbook(
        data=tmp_path / "own.h5ad", out=tmp_path / "b", params={"backend": "cpu"}, progress=False
    )
    res = ad.read_h5ad(run / "adata.h5ad")
    prov = json.loads((run / "provenance.json").read_text())["parameters"]
    assert prov["batch_key"] is None and prov["label_key"] is None and prov["dpt_groups"] is None
    assert res.uns["rank_genes_groups_wilcoxon"]["params"]["groupby"] == "leiden_harmony"
    assert res.obs["dpt_pseudotime"].notna().all()  # all cells, rooted at a diffusion-map end
    assert res.uns["dpt"]["root_group"] in set(res.obs["leiden_harmony"].astype(str))
    log = (run / "scRNA_analysis_preprocessing.ipynb").read_text()
    assert "batch_key='auto': no obs column batch / sample / assay" in log
    assert "root_group='auto': the pseudotime starts in" in log
    # a column that is not there, named on purpose, still stops the run at load
    with pytest.raises(scp.runner.RunFailed, match="batch_key='donor' is not a column of obs"):
        scp.runner.run_playbook(
            data=tmp_path / "own.h5ad", out=tmp_path / "a", params={"batch_key": "donor"},
            progress=False,
        )  # fmt: skip


def test_labels_in_dpt_root_without_label_key_refused_early(tmp_path):
    params = {"label_key": None, "dpt_root": "CD14 Monocyte", "backend": "cpu"}
    with pytest.raises(scp.runner.RunFailed) as e:
        scp.runner.run_playbook(out=tmp_path, params=params, progress=False)
    assert "label_key is None, so groups are Leiden clusters" in str(e.value)
    (run,) = tmp_path.iterdir()
    assert json.loads(
        (run / "scRNA_analysis_preprocessing.ipynb").read_text()
    )  # saved with the error


def test_large_results_are_not_copied_into_the_zip(run_dir, tmp_path, monkeypatch):
    """An adata.h5ad over the limit stays beside the zip, and the zip says where it is."""
    import shutil

    from scplaybook.runner import _run

    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    (copy / f"{run_dir.name}.zip").unlink()
    monkeypatch.setattr(_run, "ZIP_MAX_H5AD", 1000)
    with zipfile.ZipFile(_run._zip(copy)) as z:
        names = z.namelist()
        note = z.read(f"{run_dir.name}/NOT_IN_THIS_ZIP.txt").decode()
    assert f"{run_dir.name}/adata.h5ad" not in names and "adata.h5ad" in note
    assert f"{run_dir.name}/markers.csv" in names and (copy / "adata.h5ad").exists()


def test_large_raw_is_not_saved(result, monkeypatch):
    """Above RAW_MAX_NNZ the all-gene matrix is left out; X and the counts stay."""
    from scplaybook.runner import _run

    monkeypatch.setattr(_run, "RAW_MAX_NNZ", 10)
    scaled = result.copy()
    scaled.X = scaled.X.toarray()  # as the analysis leaves it: dense
    saved = _run._as_saved(scaled)
    assert saved.raw is None and (saved.X != result.X).nnz == 0
    assert "counts" in saved.layers and saved.obsm.keys() == result.obsm.keys()
    assert isinstance(scaled.X, type(result.X.toarray()))  # the analysed object is unchanged


def test_counts_come_back_exactly_from_the_log_normalised_values():
    """layers['counts'] is derived from X and the per-cell totals, not read again: exact, also large."""
    import numpy as np
    import scipy.sparse as sp

    from scplaybook.runner import _run

    rng = np.random.default_rng(0)
    counts = sp.random(300, 400, density=0.1, format="csr", random_state=0, dtype=np.float32)
    counts.data = np.rint(counts.data * 50) + 1
    counts.data[:5] = [65_000, 99_999, 1, 2, 30_000]  # deep genes in a few cells
    a = ad.AnnData(counts.copy())
    a.obs_names = [f"c{i}" for i in range(300)]
    scp.pp.normalize_total(a, target_sum=1e4)
    scp.pp.log1p(a)
    a.raw = a.copy()
    a = a[:, rng.permutation(400)[:100]].copy()  # the "highly variable" genes, any order
    a.X = a.X.toarray()  # as scaling leaves it
    saved = _run._as_saved(a)
    got = _run._counts_from_log_normalised(saved)
    cols = a.raw.var_names.get_indexer(a.var_names)
    assert (got != counts[:, cols]).nnz == 0


def test_the_run_does_not_wait_for_the_kernel_to_tear_down(tmp_path, monkeypatch):
    """After the last cell the kernel is stopped at once, with the processes it started: the user
    does not wait for its teardown (1.0 s of the CPU demo run on the development machine)."""
    import os
    import signal
    import time
    from datetime import datetime
    from pathlib import Path

    import nbformat

    from scplaybook.runner import _run

    child = tmp_path / "child.pid"
    source = f"""import subprocess, threading, time
from pathlib import Path
proc = subprocess.Popen(["sleep", "120"])  # as a Dask worker or a warm-up process would be
Path({str(child)!r}).write_text(str(proc.pid))
threading.Thread(target=time.sleep, args=(60,)).start()  # a kernel slow to exit"""
    path = _one_cell_notebook(tmp_path, source)
    monkeypatch.setattr(_run, "_html", lambda *a: None)  # the report is not what is timed here
    run = scp.runner.run_playbook(notebook=path, out=tmp_path / "out", progress=False)
    done = time.time()
    assert (run / "STATUS").read_text().startswith("succeeded")
    cell = nbformat.read(run / _run.NOTEBOOK_NAME, as_version=4).cells[0].metadata.papermill
    after_last_cell = done - datetime.fromisoformat(cell["end_time"]).timestamp()
    # measured on the development machine: 0.13 s; with jupyter_client's graceful shutdown (the
    # default: interrupt, ask the kernel to exit, wait for it) 2.63 s for this kernel
    assert after_last_cell < 1.5, after_last_cell
    pid = int(child.read_text())
    time.sleep(0.5)
    try:  # the kernel's child went with it (its process group); a zombie counts as gone
        os.kill(pid, 0)
        alive = Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        alive = False
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"process {pid} outlived the kernel"
