"""setup/setup_playbook.sh, the script the launcher runs inside the RAPIDS image, rehearsed on the CPU.

A Python environment that already holds the image's kind of packages (this test environment: numpy,
pandas, scanpy, JupyterLab...) stands in for the image. The playbook folder is read-only, as the
launcher mounts it; the results and envs folders are made beforehand, as the launcher makes them on
the host. Run as uid 1001 (the image's user) where this machine allows it (root, and an interpreter
that uid can reach); the GPU machine runs the same rehearsal with the RAPIDS wheels (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import scplaybook as scp

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _reachable_by(uid: int) -> bool:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return False
    p = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-c", "pass"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    return p.returncode == 0


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    base = tmp_path_factory.mktemp("container")
    pb = base / "playbook"
    pb.mkdir()
    for part in ("setup", "src", "scRNA_analysis_preprocessing.ipynb", "pyproject.toml"):
        src = ROOT / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, pb / part)
    uid = 1001 if _reachable_by(1001) else os.geteuid()
    for d in ("results", "envs", "envs/home"):
        (base / d).mkdir()
        os.chown(base / d, uid, uid) if os.geteuid() == 0 else None
    a = scp.datasets.synthetic_pbmc(800, 1500, seed=1, progress=False)
    a.write_h5ad(base / "small.h5ad")
    os.chmod(base / "small.h5ad", 0o644)
    subprocess.run(["chmod", "-R", "a-w", str(pb)], check=True)
    return base, uid


def _setup(stage, *args, **env):
    base, uid = stage
    cmd = ["bash", str(base / "playbook/setup/setup_playbook.sh"), *args]
    if uid != os.geteuid():
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *cmd]
    e = {
        "PATH": "/usr/bin:/bin", "HOME": str(base / "envs/home"), "MPLBACKEND": "Agg",
        "PLAYBOOK_DIR": str(base / "playbook"), "PLAYBOOK_RESULTS": str(base / "results"),
        "PLAYBOOK_ENVS": str(base / "envs"), "PLAYBOOK_IMAGE_PYTHON": sys.executable,
        "PLAYBOOK_IMAGE": "example.org/rapids/notebooks:stand-in", "PLAYBOOK_CUDA": "13", **env,
    }  # fmt: skip
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)  # fmt: skip


def _freeze():
    cmd = [sys.executable, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def test_setup_adds_requirements_once_and_runs_the_playbook(stage):
    base, uid = stage
    before = _freeze()
    data = [
        "--data",
        str(base / "small.h5ad"),
        "--param",
        "backend=cpu",
        "--param",
        "n_top_genes=500",
    ]
    p = _setup(stage, "--headless", *data)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "adding the playbook's requirements to the image, once" in p.stderr
    assert _freeze() == before  # the image's packages are untouched
    (env,) = [d for d in (base / "envs").iterdir() if d.name != "home"]
    assert env.name.startswith("notebooks_stand-in-")
    sites = (env / ".pythonpath").read_text().strip().split(":")
    installed = {d.name.split("-")[0] for s in sites for d in Path(s).glob("*.dist-info")}
    assert "rapids_singlecell_cu13" in installed and "docrep" in installed
    assert not {"numpy", "pandas", "scanpy", "jupyterlab"} & installed  # the image had them
    (run,) = [d for d in (base / "results").iterdir() if d.name.startswith("run-")]
    assert (run / "STATUS").read_text().startswith("succeeded")
    assert (run / "adata.h5ad").stat().st_size > 0 and (run / "markers.csv").stat().st_size > 0
    prov = json.loads((run / "provenance.json").read_text())
    # the stand-in has scplaybook installed (editable); the image has not: "0.1.0+checkout" there
    assert prov["backend"] == "cpu" and prov["versions"]["scplaybook"].startswith("0.1.0")
    assert all(p.stat().st_uid == uid for p in run.rglob("*"))
    assert (base / "results/workspace/scRNA_analysis_preprocessing.ipynb").exists()
    # a second start installs nothing: with no index to install from, it still starts
    stamp = (env / ".installed").stat().st_mtime_ns
    p = _setup(stage, "--headless", "--param", "no_such_knob=1", PLAYBOOK_WHEELHOUSE="/nonexistent")
    assert "installed earlier" in p.stderr and "nothing to install" in p.stderr
    assert p.returncode == 2 and "unknown parameter(s) no_such_knob" in p.stderr
    assert (env / ".installed").stat().st_mtime_ns == stamp


def test_unwritable_envs_folder_is_named(stage, tmp_path):
    blocker = tmp_path / "envs"
    blocker.write_text("a file where the folder should be")
    p = _setup(stage, "--headless", PLAYBOOK_ENVS=str(blocker))
    assert p.returncode == 2 and f"cannot write {blocker}" in p.stderr
