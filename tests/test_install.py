"""The install contract: every requirement set resolves from the package index as binary wheels.

These tests ask the package index (CI reaches it); pip resolves for the target's Python and platform
(``setup/wheelhouse.py``), not this machine's. The container sets are checked against a stand-in for
the RAPIDS 26.10 image's packages (``setup/image-rapids-26.10-cuda1x.txt``): they must install nothing
the image brings, change none of its versions, and add no second CUDA stack under pip's names.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "setup"

_spec = importlib.util.spec_from_file_location("wheelhouse", SETUP / "wheelhouse.py")
wh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wh)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The pure-Python source-only packages, built into wheels once for the module."""
    d = tmp_path_factory.mktemp("built")
    wheels = wh.build_source_only(d)
    assert [w.name for w in wheels] == ["docrep-0.3.2-py3-none-any.whl"]
    return d


@pytest.fixture(scope="module")
def plans(built, tmp_path_factory):
    """Every resolution the module checks, started at once (each is a pip process, mostly waiting
    on the index): ``plans(key)`` waits for one and returns its result or raises its error."""
    tmp = tmp_path_factory.mktemp("req")
    stack = tmp / "stack.txt"
    stack.write_text(f"-r {SETUP / 'requirements-container-cu13.txt'}\ncupy-cuda13x==14.2.0\n")  # fmt: skip
    jobs = {s: (wh.plan, (s,), {"built": built}) for s in wh.SETS}
    jobs["stack"] = (wh.plan, ("container-cu13",), {"built": built, "requirements": stack})
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # the cu12 extra differs from cu13's only by the suffix (its pinned set resolves above)
    for extra in ("gpu-cu13",):
        req = tmp / f"{extra}.txt"
        req.write_text(
            "\n".join(meta["dependencies"] + meta["optional-dependencies"][extra]) + "\n"
        )
        # the extras must hold together with the tested pins of the same set
        pins = tmp / f"{extra}-pins.txt"
        pins.write_text("".join(f"{n}=={v}\n" for f in ("requirements-common.txt", f"requirements-{extra}.txt") for n, v in wh.read_pins(SETUP / f).items()))  # fmt: skip
        jobs[extra + "-extra"] = (wh.resolve, ([req],), {"python": "3.12", "find_links": built, "constraints": pins})  # fmt: skip
    pool = ThreadPoolExecutor(max_workers=4)
    futures = {k: pool.submit(f, *a, **kw) for k, (f, a, kw) in jobs.items()}
    yield lambda key: futures[key].result()
    pool.shutdown(cancel_futures=True)


def _names(specs):
    return {wh.norm(s.split("==")[0]): s.split("==")[1] for s in specs}


@pytest.mark.parametrize("cuda", [12, 13])
def test_container_set_adds_only_what_the_image_lacks(plans, cuda):
    result = plans(f"container-cu{cuda}")
    assert result["python"] == "3.13"
    image = wh.read_pins(SETUP / f"image-rapids-26.10-cuda{cuda}.txt")
    new = _names(result["install"])
    assert new[f"rapids-singlecell-cu{cuda}"] == "0.18.1"
    assert {"scanpy", "anndata", "harmonypy", "igraph", "leidenalg", "papermill"} <= set(new)
    assert not set(new) & set(image)  # nothing the image brings is installed again
    for name, version in _names(result["from_image"]).items():
        assert image[name] == version  # the image's packages stay at its versions
    assert not [n for n in new if wh.STACK.match(n)]
    assert result["built_from_source"] == ["docrep"]
    # the requirement files name nothing the image brings
    for f in ("requirements-container.txt", f"requirements-container-cu{cuda}.txt"):
        assert not set(wh.read_pins(SETUP / f)) & set(image), f


def _with_extra(tmp_path, line, cuda=13):
    req = tmp_path / "req.txt"
    req.write_text(f"-r {SETUP / f'requirements-container-cu{cuda}.txt'}\n{line}\n")
    return req


def test_container_check_refuses_a_change_to_an_image_package(built, tmp_path):
    with pytest.raises(wh.ResolveError, match="pandas"):
        wh.plan("container-cu13", built=built, requirements=_with_extra(tmp_path, "pandas==3.1.1"))


def test_container_check_refuses_a_second_cuda_stack(plans):
    with pytest.raises(wh.ResolveError, match="second copy") as e:
        plans("stack")
    assert "cupy-cuda13x" in str(e.value)  # the image has CuPy as conda's "cupy"


def test_a_package_without_a_wheel_fails(built, tmp_path):
    # rapids-singlecell under its plain name is a source archive that needs nvcc
    req = tmp_path / "req.txt"
    req.write_text("rapids-singlecell==0.18.1\n")
    with pytest.raises(wh.ResolveError, match="rapids-singlecell"):
        wh.plan("gpu-cu13", built=built, requirements=req)


@pytest.mark.parametrize("cuda", [12, 13])
def test_local_gpu_set_resolves_within_rapids_bounds(plans, cuda):
    result = plans(f"gpu-cu{cuda}")
    got = _names(result["install"])
    assert result["python"] == "3.12"
    assert got[f"rapids-singlecell-cu{cuda}"] == "0.18.1"
    assert got[f"cudf-cu{cuda}"].startswith("26.10.") and got[f"cuml-cu{cuda}"].startswith("26.10.")
    assert got[f"cupy-cuda{cuda}x"] and got["dask-cuda"].startswith("26.10.")
    # RAPIDS 26.10 bounds these; the CPU set pins newer ones
    assert tuple(map(int, got["numba"].split(".")[:2])) < (0, 65)
    assert tuple(map(int, got["pandas"].split(".")[:2])) < (3, 1)
    # every pin of the set is what pip resolved (the file is the whole truth)
    for f in ("requirements-common.txt", f"requirements-gpu-cu{cuda}.txt"):
        for name, version in wh.read_pins(SETUP / f).items():
            assert got[wh.norm(name)] == version, (f, name)


def test_cpu_set_resolves(plans):
    got = _names(plans("cpu")["install"])
    for f in ("requirements-common.txt", "requirements-cpu.txt"):
        for name, version in wh.read_pins(SETUP / f).items():
            assert got[wh.norm(name)] == version, (f, name)
    assert not [n for n in got if n.endswith(("-cu12", "-cu13")) or n.startswith("cupy")]


@pytest.mark.parametrize("extra", ["gpu-cu13"])
def test_pyproject_gpu_extras_resolve_with_the_pinned_set(plans, extra):
    got = {i["name"] for i in plans(extra + "-extra")}
    cu = extra[-2:]
    assert {f"rapids-singlecell-cu{cu}", f"cuml-cu{cu}", f"cudf-cu{cu}", "dask-cuda"} <= got


def test_download_wheels_script_makes_the_container_wheelhouse(tmp_path):
    out = tmp_path / "wheels"
    p = subprocess.run(
        ["bash", str(SETUP / "download_wheels.sh"), str(out), "--container-cu13"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    plan = json.loads((out / "wheelhouse.json").read_text())
    wheels = {wh.norm(w.name.split("-")[0]) for w in out.glob("*.whl")}
    assert {wh.norm(s.split("==")[0]) for s in plan["install"]} == wheels
    assert "rapids-singlecell-cu13" in wheels and "docrep" in wheels
    assert all(w.name.endswith(("-manylinux_2_28_x86_64.whl", "x86_64.whl", "-any.whl")) for w in out.glob("*.whl"))  # fmt: skip
    assert any("cp313" in w.name or "abi3" in w.name for w in out.glob("*.whl"))
    p = subprocess.run(
        ["bash", str(SETUP / "download_wheels.sh"), str(out), "--gpu-cu14"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert p.returncode == 2 and "unknown option --gpu-cu14" in p.stderr
