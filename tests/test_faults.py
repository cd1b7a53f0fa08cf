"""Faults: killed downloads, unwritable folders, dying kernels. Nothing lost, nothing half-written."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import numpy as np
import pytest

import scplaybook as scp
from scplaybook.io._write import atomic_write, atomic_write_text
from scplaybook.runner._run import new_run_dir

from .test_fetch import BODY, SHA


@pytest.fixture
def slow_server():
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            start = 0
            if self.headers.get("Range"):
                start = int(self.headers["Range"].split("=")[1].split("-")[0])
                self.send_response(206)
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(BODY) - start))
            self.end_headers()
            for i in range(start, len(BODY), 10_000):
                self.wfile.write(BODY[i : i + 10_000])
                self.wfile.flush()
                time.sleep(H.delay)

    H.delay = 0.05
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/data.h5ad", H
    httpd.shutdown()
    httpd.server_close()


def test_sigkill_mid_download_then_resume(slow_server, tmp_path):
    url, handler = slow_server
    cmd = [
        sys.executable,
        "-m",
        "scplaybook",
        "fetch",
        url,
        "--sha256",
        SHA,
        "--cache",
        str(tmp_path),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part = tmp_path / "data.h5ad.part"
    deadline = time.time() + 30
    while time.time() < deadline and (not part.exists() or part.stat().st_size < 50_000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "data.h5ad").exists()
    got = part.stat().st_size
    assert 0 < got < len(BODY)
    handler.delay = 0
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "data.h5ad").read_bytes() == BODY and not part.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_failed_write_leaves_no_file_and_keeps_old(tmp_path):
    target = tmp_path / "markers.csv"
    target.write_text("earlier good content")

    def boom(p: Path):
        p.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(
        scp.PlaybookError, match="No space left on device.*nothing was left under that name"
    ):
        atomic_write(target, boom)
    assert target.read_text() == "earlier good content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["markers.csv"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(scp.PlaybookError, match="Cannot write"):
            atomic_write_text(ro / "x.json", "{}")
        with pytest.raises(scp.PlaybookError, match="cannot create a run folder"):
            new_run_dir(ro)
    finally:
        ro.chmod(0o700)


def test_unwritable_output_path(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    with pytest.raises(scp.PlaybookError, match="cannot create the results folder"):
        new_run_dir(blocker / "sub")
    assert blocker.read_text().startswith("a file")


def _tiny_notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("output_dir = None\nbackend = 'cpu'")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def test_kernel_death_has_its_own_exit_code(tmp_path, capsys):
    from scplaybook._cli import main

    nb = _tiny_notebook(
        tmp_path / "die.ipynb", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"
    )
    code = main(["run", "--notebook", str(nb), "--out", str(tmp_path / "out")])
    assert code == 3
    assert "kernel died" in capsys.readouterr().err
    (run,) = (tmp_path / "out").iterdir()
    assert (run / "STATUS").read_text().startswith("failed")
    assert "kernel died" in (run / "error.txt").read_text()


def test_oom_in_notebook_is_reported_with_the_step(tmp_path, capsys):
    from scplaybook._cli import main

    body = (
        "import scplaybook as scp, scanpy\n"
        "class OutOfMemoryError(Exception):\n    pass\n"
        "def boom(*a, **k):\n    raise OutOfMemoryError('Out of memory allocating 8,589,934,592 bytes')\n"
        "scanpy.pp.log1p = boom\n"
        "a = scp.datasets.synthetic_pbmc(200, 800, progress=False)\n"
        "scp.pp.log1p(a)"
    )
    nb = _tiny_notebook(tmp_path / "oom.ipynb", body)
    assert main(["run", "--notebook", str(nb), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "GPUMemoryError" in err and "log1p ran out of memory" in err and "8,589,934,592" in err
    (run,) = (tmp_path / "out").iterdir()
    nbout = json.loads((run / "scRNA_analysis_preprocessing.ipynb").read_text())
    assert any(
        o.get("ename") == "GPUMemoryError" for c in nbout["cells"] for o in c.get("outputs", [])
    )


def test_results_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644


def test_bad_input_through_the_command_line_ends_with_one_message(tmp_path, raw_adata, capsys):
    from scplaybook._cli import main

    good = tmp_path / "good.h5ad"
    raw_adata[:50].copy().write_h5ad(good)
    cut = tmp_path / "cut.h5ad"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert main(["run", "--data", str(cut), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    (line,) = [ln for ln in err if ln.startswith("error:")]
    assert "looks truncated or corrupt" in line and str(cut) in line
    assert (
        not any(ln.startswith("Traceback") for ln in err) and "Partial results are kept" in err[-1]
    )


def test_checksums_cover_new_files_and_reuse_old(tmp_path, monkeypatch):
    from scplaybook.io._checksums import write_checksums

    (tmp_path / "a.csv").write_text("a")
    write_checksums(tmp_path)
    calls = []
    import scplaybook.io._checksums as sums

    real = sums.sha256sum
    monkeypatch.setattr(sums, "sha256sum", lambda p: calls.append(p.name) or real(p))
    (tmp_path / "b.html").write_text("b")
    text = write_checksums(tmp_path).read_text()
    assert calls == ["b.html"] and "a.csv" in text and "b.html" in text
    assert scp.io.verify_checksum(tmp_path / "a.csv") and scp.io.verify_checksum(
        tmp_path / "b.html"
    )


def test_the_notebook_is_saved_as_it_runs_but_not_at_every_cell(tmp_path, monkeypatch, recwarn):
    """papermill saved the whole notebook at every cell's start and end (1.2-1.6 s of the demo on an
    H200 host); the runner saves at its start, at most every SAVE_EVERY_S seconds, and at its end."""
    import papermill.engines

    from scplaybook.runner import _run

    writes = []
    real = papermill.engines.write_ipynb
    monkeypatch.setattr(papermill.engines, "write_ipynb", lambda nb, path: (writes.append(path), real(nb, path)))  # fmt: skip
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"print('cell {i}')") for i in range(12)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, tmp_path / "many.ipynb")
    monkeypatch.setattr(_run, "_html", lambda *a: None)
    run = scp.runner.run_playbook(
        notebook=tmp_path / "many.ipynb", out=tmp_path / "out", progress=False
    )
    assert 2 <= len(writes) <= 4, writes  # papermill's own: 2 + 2 per cell = 26
    assert all(str(p).endswith(".ipynb") for p in writes)  # papermill warns the user of others
    assert not [w for w in recwarn if "does not end in one of" in str(w.message)]
    done = nbformat.read(run / _run.NOTEBOOK_NAME, as_version=4)
    printed = [o["text"] for c in done.cells for o in c.get("outputs", [])]  # after the injected
    assert printed == [f"cell {i}\n" for i in range(12)]  # parameters: every cell's, in order


def test_a_dying_kernel_keeps_the_cells_before_it(tmp_path):
    from scplaybook._cli import main

    nb = _tiny_notebook(tmp_path / "die.ipynb", "print('before the end')")
    book = nbformat.read(nb, as_version=4)
    book.cells.append(
        nbformat.v4.new_code_cell("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    )
    nbformat.write(book, nb)
    assert main(["run", "--notebook", str(nb), "--out", str(tmp_path / "out")]) == 3
    (run,) = (tmp_path / "out").iterdir()
    kept = nbformat.read(run / "scRNA_analysis_preprocessing.ipynb", as_version=4)
    printed = [o.get("text") for c in kept.cells for o in c.get("outputs", [])]
    assert "before the end\n" in printed


def _folder_for_zip(tmp_path):
    run = tmp_path / "run-1"
    (run / "figures").mkdir(parents=True)
    rng = np.random.default_rng(0)
    (run / "adata.h5ad").write_bytes(rng.bytes(3_000_000))
    (run / "figures" / "umap.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(50_000))
    (run / "notebook.ipynb").write_text('{"cells": []}\n' * 2000)
    (run / "STATUS").write_text("running\n")
    (run / "SHA256SUMS").write_text("old\n")
    return run


def test_zip_started_early_holds_the_files_as_they_end(tmp_path):
    """The zip begins on the finished files; report, checksums and status join as they end up."""
    from scplaybook.runner._run import _Zip

    run = _folder_for_zip(tmp_path)
    zipping = _Zip(run)
    (run / "report.html").write_text("<html>report</html>")
    (run / "SHA256SUMS").write_text("new\n")
    (run / "STATUS").write_text("succeeded\n")
    path = zipping.finish()
    assert path == run / "run-1.zip" and not list(tmp_path.glob(".*"))
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        inside = {n.removeprefix("run-1/"): z.read(n) for n in z.namelist()}
    on_disk = {
        p.relative_to(run).as_posix(): p.read_bytes()
        for p in run.rglob("*") if p.is_file() and p.suffix != ".zip"
    }  # fmt: skip
    assert inside == on_disk and inside["STATUS"] == b"succeeded\n"


def test_zip_aborted_or_failing_leaves_nothing_half_written(tmp_path, monkeypatch):
    from scplaybook.runner import _run

    run = _folder_for_zip(tmp_path)
    _run._Zip(run).abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-1"]
    assert not list(run.glob("*.zip"))

    real = shutil.copyfileobj

    def full_disk(src, dst, *args, **kwargs):
        if str(src.name).endswith(".h5ad"):
            raise OSError(28, "No space left on device")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfileobj", full_disk)
    zipping = _run._Zip(run)
    with pytest.raises(scp.PlaybookError, match="No space left on device"):
        zipping.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-1"]
    assert (run / "adata.h5ad").stat().st_size == 3_000_000
