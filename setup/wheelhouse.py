"""Resolve and download the playbook's pinned requirement sets as binary wheels, for another machine.

Used by ``setup/download_wheels.sh`` (offline installs) and by ``tests/test_install.py`` (the install
contract that CI checks). Standard library only; pip >= 22.2 does the resolving, for the target's
Python version and platform rather than this machine's, with binary wheels only.

Sets (``--set``):

- ``cpu``, ``gpu-cu12``, ``gpu-cu13``: a local virtual environment (``start_playbook.sh --local
  [--gpu]``), every package of the set.
- ``container-cu12``, ``container-cu13``: inside the RAPIDS image, only what the image does not
  bring. The image's packages are held at the versions in ``image-rapids-26.10-cudaXX.txt`` (a
  stand-in for the image, made by ``wheelhouse.py image``): a set that needs any of them changed,
  or that would add a second copy of the CUDA stack under pip's names, is refused.

Pure-Python packages that are published only as source archives (``requirements-source-only.txt``) are built into
wheels first, with no compiler; any other package without a wheel fails the resolution.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SETUP = Path(__file__).resolve().parent
RAPIDS = "26.10"
# Published only as a source archive, pure Python (built into a wheel with no compiler).
SOURCE_ONLY_FILE = SETUP / "requirements-source-only.txt"
SETS = {
    "cpu": ("requirements-cpu.txt", None),
    "gpu-cu12": ("requirements-gpu-cu12.txt", None),
    "gpu-cu13": ("requirements-gpu-cu13.txt", None),
    "container-cu12": ("requirements-container-cu12.txt", "image-rapids-26.10-cuda12.txt"),
    "container-cu13": ("requirements-container-cu13.txt", "image-rapids-26.10-cuda13.txt"),
}
DEFAULT_PYTHON = {"container": "3.13", "local": "3.12"}
# Names that must never be installed next to the image: its CUDA stack under pip's names (the image
# has them as conda packages: cudf, not cudf-cu13), or its array stack. rapids-singlecell is ours.
STACK = re.compile(
    r"^(?!rapids-singlecell)(cupy(-cuda\d+x)?|nvidia-.*|cuda-toolkit|.*-cu1\d|numba(-cuda.*)?|llvmlite"
    r"|numpy|pandas|scipy|scikit-learn|pyarrow|dask|distributed|rapids-dask-dependency)$"
)


class ResolveError(RuntimeError):
    """pip could not resolve a set with the given target, binary wheels only."""


def norm(name: str) -> str:
    """Return the normalised project name (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def platforms(arch: str) -> list[str]:
    """Return the manylinux tags a Linux machine of ``arch`` with glibc >= 2.28 accepts.

    pip matches ``--platform`` tags exactly, so every older tag is listed too.
    """
    tags = [f"manylinux_2_{n}_{arch}" for n in range(28, 16, -1)]
    tags += [f"manylinux2014_{arch}"]
    if arch == "x86_64":
        tags += ["manylinux2010_x86_64", "manylinux_2_12_x86_64", "manylinux_2_5_x86_64"]
        tags += ["manylinux1_x86_64"]
    return tags


def read_pins(path: Path) -> dict[str, str]:
    """Return ``{name: version}`` of the ``name==version`` lines of a constraints file."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[norm(name.split("[")[0])] = version.split(";")[0].strip()
    return pins


def _pip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        err = [ln for ln in p.stderr.splitlines() if ln.startswith("ERROR") or "conflict" in ln]
        raise ResolveError("\n".join(err[-12:]) or p.stderr[-2000:])
    return p


def _source_only() -> list[str]:
    return [f"{n}=={v}" for n, v in read_pins(SOURCE_ONLY_FILE).items()]


def build_source_only(dest: Path) -> list[Path]:
    """Build the pure-Python source-only packages into wheels in ``dest`` (no compiler needed)."""
    dest.mkdir(parents=True, exist_ok=True)
    wheels = []
    for req in _source_only():
        name, version = req.split("==")
        found = [w for w in dest.glob("*.whl") if norm(w.name.split("-")[0]) == norm(name)]
        if not found:
            _pip("wheel", "-q", "--no-deps", "-w", str(dest), req)
            found = [w for w in dest.glob("*.whl") if norm(w.name.split("-")[0]) == norm(name)]
        if not found or not found[0].name.endswith("-py3-none-any.whl"):
            raise ResolveError(f"{req} did not build into a pure-Python wheel")
        wheels += found
    return wheels


def resolve(
    requirements: list[Path],
    *,
    python: str,
    arch: str = "x86_64",
    constraints: Path | None = None,
    find_links: Path | None = None,
) -> list[dict]:
    """Resolve requirement files for another interpreter and platform, binary wheels only.

    Parameters
    ----------
    requirements
        Requirement files (``-r``).
    python
        Target Python version, e.g. ``"3.13"``.
    arch
        ``x86_64`` or ``aarch64``.
    constraints
        Optional constraints file (``-c``).
    find_links
        Optional folder of extra wheels (the source-only packages, built).

    Returns
    -------
    One dict per package: ``name`` (normalised), ``version``, ``url``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        args = ["install", "--dry-run", "--ignore-installed", "--only-binary=:all:", "-q"]
        args += ["--target", str(Path(tmp) / "t"), "--report", str(report)]
        args += ["--python-version", python, "--implementation", "cp"]
        for tag in platforms(arch):
            args += ["--platform", tag]
        for r in requirements:
            args += ["-r", str(r)]
        if constraints:
            args += ["-c", str(constraints)]
        if find_links:
            args += ["--find-links", str(find_links)]
        _pip(*args)
        items = json.loads(report.read_text())["install"]
    return [
        {
            "name": norm(i["metadata"]["name"]),
            "version": i["metadata"]["version"],
            "url": i["download_info"]["url"],
        }
        for i in items
    ]


def plan(
    set_name: str,
    *,
    python: str | None = None,
    arch: str = "x86_64",
    requirements: Path | None = None,
    built: Path,
) -> dict:
    """Resolve one set and say what would be installed; raise ResolveError when it cannot hold.

    For a container set, ``install`` is what the image lacks, and the resolution must keep every
    image package at the image's version and add no second CUDA stack.
    """
    req_name, image_name = SETS[set_name]
    python = python or DEFAULT_PYTHON["container" if image_name else "local"]
    req = requirements or SETUP / req_name
    image = SETUP / image_name if image_name else None
    build_source_only(built)
    items = resolve([req], python=python, arch=arch, constraints=image, find_links=built)
    pins = read_pins(image) if image else {}
    changed = [
        f"{i['name']} {pins[i['name']]} -> {i['version']}"
        for i in items
        if i["name"] in pins and pins[i["name"]] != i["version"]
    ]
    install = [i for i in items if i["name"] not in pins]
    stack = [i["name"] for i in install if image and STACK.match(i["name"])]
    if changed:
        raise ResolveError(f"the set would change packages the image brings: {', '.join(changed)}")
    if stack:
        raise ResolveError(
            "the set would install a second copy of packages the image brings under other names: "
            + ", ".join(stack)
        )
    source_built = sorted(i["name"] for i in items if i["url"].startswith("file:") and str(built) in i["url"])  # fmt: skip
    return {
        "set": set_name,
        "python": python,
        "arch": arch,
        "install": [f"{i['name']}=={i['version']}" for i in install],
        "from_image": sorted(f"{i['name']}=={i['version']}" for i in items if i["name"] in pins),
        "built_from_source": source_built,
    }


def download(result: dict, dest: Path, built: Path) -> int:
    """Download every wheel of a resolved set into ``dest``; return how many wheels it holds."""
    dest.mkdir(parents=True, exist_ok=True)
    names = {norm(n.split("==")[0]) for n in result["install"]}
    for w in built.glob("*.whl"):
        if norm(w.name.split("-")[0]) in names:
            (dest / w.name).write_bytes(w.read_bytes())
    built_names = {norm(n) for n in read_pins(SOURCE_ONLY_FILE)}
    wanted = [r for r in result["install"] if norm(r.split("==")[0]) not in built_names]
    args = ["download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    args += ["--python-version", result["python"], "--implementation", "cp"]
    for tag in platforms(result["arch"]):
        args += ["--platform", tag]
    _pip(*args, *wanted)
    return len(list(dest.glob("*.whl")))


def image_constraints(cuda: int, python: str, arch: str = "x86_64") -> str:
    """Write a stand-in for the RAPIDS notebooks image's Python packages, from RAPIDS' metadata.

    The image installs the conda ``rapids`` meta-package (integration repository,
    ``conda/recipes/rapids/recipe.yaml``) with JupyterLab 4, dask-labextension and
    jupyterlab-nvdashboard. Their pip twins, resolved for the image's Python, give the versions
    RAPIDS' own metadata allows; the names are mapped to the ones the conda packages carry
    (``cudf-cu13`` -> ``cudf``, ``cupy-cuda13x`` -> ``cupy``) and the C++/CUDA library wheels, which
    are not Python packages in the image, are left out.
    """
    s = f"-cu{cuda}"
    heads = [
        f"cudf{s}=={RAPIDS}.*", f"cudf-polars{s}=={RAPIDS}.*", f"cuvs{s}=={RAPIDS}.*",
        f"cugraph{s}=={RAPIDS}.*", f"nx-cugraph{s}=={RAPIDS}.*", f"nvforest{s}=={RAPIDS}.*",
        f"cuml{s}=={RAPIDS}.*", f"cucim{s}=={RAPIDS}.*", f"dask-cuda=={RAPIDS}.*",
        f"dask-cudf{s}=={RAPIDS}.*", f"rmm{s}=={RAPIDS}.*", f"pylibcugraph{s}=={RAPIDS}.*",
        f"raft-dask{s}=={RAPIDS}.*", "jupyterlab>=4,<5", "dask-labextension>=7",
        "jupyterlab-nvdashboard>=0.13", "ipython>=8.37",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "image.txt"
        req.write_text("\n".join(heads) + "\n")
        items = resolve([req], python=python, arch=arch)
    lines = []
    for i in items:
        name = i["name"]
        if name.startswith(("lib", "nvidia-")) or name == "cuda-toolkit":
            continue
        name = re.sub(rf"^cupy-cuda{cuda}x$", "cupy", name)
        name = re.sub(rf"-cu{cuda}$", "", name)
        lines.append(f"{name}=={i['version']}")
    head = (
        f"# Stand-in for the Python packages of the RAPIDS {RAPIDS} notebooks image, CUDA {cuda},"
        f" Python {python}\n# (nvcr.io/nvidia/rapidsai/notebooks:{RAPIDS}-cuda{cuda}-py{python}),"
        " derived from RAPIDS' own package metadata:\n# the pip twins of the conda `rapids`"
        " meta-package (rapidsai/integration, conda/recipes/rapids/recipe.yaml)\n# and the"
        " image's JupyterLab 4, dask-labextension and jupyterlab-nvdashboard (rapidsai/docker,"
        " Dockerfile),\n# resolved for that Python, named as the conda packages name them."
        " The real image's versions may\n# differ: setup_playbook.sh holds the image's own"
        " versions at setup; this file lets CI check\n# requirements-container*.txt without"
        f" the image. Made by: python setup/wheelhouse.py image --cuda {cuda}\n"
    )
    return head + "\n".join(sorted(lines, key=norm)) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: ``plan``/``download`` a set, or write an ``image`` stand-in."""
    ap = argparse.ArgumentParser(prog="wheelhouse.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("plan", "download"):
        p = sub.add_parser(cmd)
        if cmd == "download":
            p.add_argument("dest", type=Path)
            p.add_argument("--tests", action="store_true", help="add requirements-test.txt")
        p.add_argument("--set", choices=sorted(SETS), default="cpu")
        p.add_argument("--python", help="target Python (default: 3.13 in a container, else 3.12)")
        p.add_argument("--arch", choices=["x86_64", "aarch64"], default="x86_64")
        p.add_argument("--requirements", type=Path, help="another requirements file for the set")
    p = sub.add_parser("image")
    p.add_argument("--cuda", type=int, choices=[12, 13], default=13)
    p.add_argument("--python", default="3.13")
    a = ap.parse_args(argv)
    try:
        import pip

        if tuple(int(x) for x in pip.__version__.split(".")[:2]) < (22, 2):
            raise ResolveError(
                f"pip {pip.__version__} is too old: {sys.executable} -m pip install -U pip"
            )
    except ImportError:
        print(f"error: {sys.executable} has no pip (e.g. apt install python3-pip)", file=sys.stderr)
        return 1
    except ResolveError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        if a.cmd == "image":
            (SETUP / f"image-rapids-{RAPIDS}-cuda{a.cuda}.txt").write_text(
                image_constraints(a.cuda, a.python)
            )
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            built = Path(tmp) / "built"
            result = plan(a.set, python=a.python, arch=a.arch, requirements=a.requirements, built=built)  # fmt: skip
            if a.cmd == "download":
                extra = [] if SETS[a.set][1] else ["requirements-build.txt"]
                extra += ["requirements-test.txt"] if a.tests else []
                more = resolve([SETUP / f for f in extra], python=result["python"], arch=a.arch) if extra else []  # fmt: skip
                result["install"] += [f"{i['name']}=={i['version']}" for i in more]
                result["wheels"] = download(result, a.dest, built)
        print(json.dumps(result, indent=1))
    except ResolveError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
