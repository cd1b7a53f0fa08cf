"""setup/start_playbook.sh with a fake docker, nvidia-smi and apptainer that record their arguments."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "setup" / "start_playbook.sh"

FAKE_DOCKER = r"""#!/usr/bin/env bash
printf '%s\n' "$(printf '%q ' "$@")" >> "$FAKE_LOG"
printf 'TOKEN_LEN=%s\n' "${#JUPYTER_TOKEN}" >> "$FAKE_LOG"
case "$1" in
  image) [ "${FAKE_IMAGE:-missing}" = present ] || { echo "Error: No such image: $3" >&2; exit 1; } ;;
  info)
    if [ "${2:-}" = "--format" ]; then
      case "$3" in
        *SecurityOptions*) echo "[name=seccomp,profile=builtin${FAKE_ROOTLESS:+ name=rootless}]" ;;
        *) echo "$FAKE_ROOTDIR" ;;
      esac
      exit 0
    fi
    case "$FAKE_DOCKER" in
      perm) echo "permission denied while trying to connect to the Docker daemon socket" >&2; exit 1 ;;
      down) echo "Cannot connect to the Docker daemon. Is the docker daemon running?" >&2; exit 1 ;;
      nonvidia) echo " Runtimes: io.containerd.runc.v2 runc" ;;
      *) echo " Runtimes: io.containerd.runc.v2 nvidia runc" ;;
    esac ;;
esac
exit 0
"""
FAKE_APPTAINER = r"""#!/usr/bin/env bash
printf '%s\n' "$(printf '%q ' "$@")" >> "$FAKE_LOG"
if [ "$1" = build ]; then
  [ -z "${FAKE_BUILD_FAILS:-}" ] || { echo "FATAL: could not use fakeroot" >&2; exit 255; }
  out=("$@"); touch "${out[-2]}"
fi
exit 0
"""
FAKE_SMI = r"""#!/usr/bin/env bash
[ -n "$FAKE_DRIVER" ] || { echo "NVIDIA-SMI has failed" >&2; exit 9; }
case "$*" in
  *driver_version*) echo "$FAKE_DRIVER" ;;
  *compute_cap*) echo "9.0" ;;
esac
"""


@pytest.fixture
def fake(tmp_path):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, text in (
        ("docker", FAKE_DOCKER),
        ("nvidia-smi", FAKE_SMI),
        ("apptainer", FAKE_APPTAINER),
    ):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    log = tmp_path / "calls.log"
    env = {
        **os.environ,
        "PATH": f"{bin_}:{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "FAKE_DOCKER": "ok",
        "FAKE_DRIVER": "580.95.05",
        "FAKE_ROOTDIR": str(tmp_path),
        "PLAYBOOK_MIN_DISK_GB": "0",
    }
    env.pop("JUPYTER_TOKEN", None)

    def run(*args, **extra):
        e = {**env, **extra}
        log.unlink(missing_ok=True)
        p = subprocess.run(
            ["bash", str(LAUNCHER), "--out", str(tmp_path / "results"), *args],
            env=e, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        calls = log.read_text().splitlines() if log.exists() else []
        return p, calls

    return run


def _run_call(calls):
    runs = [c for c in calls if c.startswith("run ")]
    assert len(runs) == 1, calls
    return shlex.split(runs[0])


@pytest.mark.parametrize(
    ("driver", "tag"),
    [
        ("580.95.05", "26.10-cuda13-py3.13"),
        ("550.54.15", "26.10-cuda12-py3.13"),
        ("535.183.01", "26.10-cuda12-py3.13"),
    ],
)
def test_image_follows_driver(fake, driver, tag):
    p, calls = fake(FAKE_DRIVER=driver)
    assert p.returncode == 0, p.stderr
    args = _run_call(calls)
    assert f"nvcr.io/nvidia/rapidsai/notebooks:{tag}" in args
    assert f"PLAYBOOK_CUDA={tag.split('cuda')[1][:2]}" in args
    assert any(c.startswith("pull ") and tag in c for c in calls)


def test_pull_only_when_the_image_is_missing_or_asked(fake):
    p, calls = fake(FAKE_IMAGE="present")
    assert p.returncode == 0 and not [c for c in calls if c.startswith("pull ")], calls
    assert _run_call(calls)
    p, calls = fake("--pull", FAKE_IMAGE="present")
    assert len([c for c in calls if c.startswith("pull ")]) == 1


def test_container_runs_as_the_host_user_with_writable_host_folders(fake, tmp_path):
    p, calls = fake("--headless")
    args = _run_call(calls)
    assert args[args.index("--user") + 1] == f"{os.getuid()}:{os.getgid()}"
    assert args[args.index("--group-add") + 1] == "conda"  # /opt/conda is root:conda 0770
    envs = ROOT / "cache" / "envs"
    assert f"{envs}:/home/rapids/envs" in args and "HOME=/home/rapids/envs/home" in args
    assert (envs / "home").is_dir() and not (envs.stat().st_mode & 0o002)  # not world-writable
    assert "PLAYBOOK_IMAGE=nvcr.io/nvidia/rapidsai/notebooks:26.10-cuda13-py3.13" in args
    p, calls = fake("--headless", FAKE_ROOTLESS="1")
    args = _run_call(calls)
    assert args[args.index("--user") + 1] == "0:0" and "--group-add" not in args


def test_dask_dashboard_published_when_workers_are_asked(fake):
    p, calls = fake("--headless", "--param", "dask_workers=2")
    args = _run_call(calls)
    assert args[args.index("-p") + 1].endswith(":8787")
    assert any(a.startswith("DASK_DISTRIBUTED__DASHBOARD__LINK=http://127.0.0.1:") for a in args)
    assert "Dask dashboard" in p.stderr
    p, calls = fake("--headless", "--param", "dask_workers=0")
    assert "-p" not in _run_call(calls)
    p, calls = fake()  # JupyterLab: the notebook may start workers
    ports = [a for i, a in enumerate(_run_call(calls)) if _run_call(calls)[i - 1] == "-p"]
    assert sorted(x.rsplit(":", 1)[1] for x in ports) == ["8787", "8888"]


def test_wheelhouse_is_mounted_read_only(fake, tmp_path):
    house = tmp_path / "wheels"
    house.mkdir()
    p, calls = fake("--headless", "--wheelhouse", str(house))
    args = _run_call(calls)
    assert (
        f"{house}:/home/rapids/wheels:ro" in args
        and "PLAYBOOK_WHEELHOUSE=/home/rapids/wheels" in args
    )
    p, _ = fake("--headless", "--wheelhouse", str(tmp_path / "none"))
    assert p.returncode == 2 and "is not a folder" in p.stderr


def test_mounts_port_token_caches(fake, tmp_path):
    p, calls = fake()
    args = _run_call(calls)
    joined = " ".join(args)
    assert f"{ROOT}:/home/rapids/playbook:ro" in args
    assert f"{tmp_path / 'results'}:/home/rapids/results" in args
    port = [a for i, a in enumerate(args) if args[i - 1] == "-p" and a.endswith(":8888")][0]
    assert port.startswith("127.0.0.1:")
    assert "JUPYTER_TOKEN" in args and not any(
        a.startswith("JUPYTER_TOKEN=") for a in args
    )  # value not on the command line
    tokens = [int(c.split("=")[1]) for c in calls if c.startswith("TOKEN_LEN=")]
    assert tokens[-1] >= 48  # 24+ random bytes, hex
    assert "allow_origin" not in joined and "--gpus all" in joined
    assert (
        "CUPY_CACHE_DIR=/home/rapids/cache/cupy" in args
        and "NUMBA_CACHE_DIR=/home/rapids/cache/numba" in args
    )
    assert any(a.endswith(":/home/rapids/cache") and "/cache/sm90-rapids26.10" in a for a in args)
    url = [ln for ln in p.stderr.splitlines() if "token=" in ln]
    assert len(url) == 1 and url[0].split("token=")[1] != ""


def test_public_binds_all_interfaces_still_with_token(fake):
    p, calls = fake("--public")
    args = _run_call(calls)
    assert all(a.startswith("0.0.0.0:") for i, a in enumerate(args) if args[i - 1] == "-p")
    assert [int(c.split("=")[1]) for c in calls if c.startswith("TOKEN_LEN=")][-1] >= 48


def test_headless_in_container(fake, tmp_path):
    data = tmp_path / "mine.h5ad"
    data.write_bytes(b"x")
    p, calls = fake("--headless", "--data", str(data), "--param", "resolution=1.0")
    args = _run_call(calls)
    assert "--headless" in args and "/home/rapids/input/mine.h5ad" in args
    assert args[-2:] == ["--param", "resolution=1.0"] and "-p" not in args


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        ({"FAKE_DOCKER": "perm"}, 2, "usermod -aG docker"),
        ({"FAKE_DOCKER": "down"}, 2, "Start the docker service"),
        ({"FAKE_DOCKER": "nonvidia"}, 2, "NVIDIA Container Toolkit"),
        ({"FAKE_DRIVER": ""}, 2, "no NVIDIA GPU/driver found"),
        ({"FAKE_DRIVER": "470.82.01"}, 2, "driver 470 is too old"),
        ({"FAKE_DRIVER": "530.30.02"}, 2, "driver 530 is too old"),
        ({"PLAYBOOK_MIN_DISK_GB": "100000000"}, 2, "GB free for docker images"),
    ],
)
def test_preflight_errors(fake, env, code, message):
    p, calls = fake("--docker", **env)
    assert p.returncode == code, p.stderr
    assert message in p.stderr
    assert not [c for c in calls if c.startswith("run ")]


def test_port_taken_moves_on_and_range_exhausted(fake):
    socks = []
    try:
        base = 20000 + os.getpid() % 20000
        for port in range(base, base + 21):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
            socks.append(s)
        p, _ = fake("--port", str(base + 20 - 20))
        assert p.returncode == 3 and "are all taken" in p.stderr
        socks.pop().close()  # base+20 is free now
        p, calls = fake("--port", str(base))
        assert p.returncode == 0 and f"port {base} is taken; using {base + 20}" in p.stderr
        assert f"127.0.0.1:{base + 20}:8888" in _run_call(calls)
    finally:
        for s in socks:
            s.close()


def test_apptainer_builds_a_readable_image_once_and_binds(fake, tmp_path):
    sif = tmp_path / "rapids.sif"
    data = tmp_path / "in" / "mine.h5ad"
    data.parent.mkdir()
    data.write_bytes(b"x")
    env = {"PLAYBOOK_APPTAINER_CACHE": str(tmp_path)}
    p, calls = fake("--apptainer", "--headless", "--data", str(data), **env)
    builds = [shlex.split(c) for c in calls if c.startswith("build ")]
    execs = [shlex.split(c) for c in calls if c.startswith("exec ")]
    assert p.returncode == 0 and len(builds) == 1 and len(execs) == 1, p.stderr
    b = builds[0]
    assert "--fakeroot" in b
    definition = Path(b[-1]).read_text()
    assert "From: nvcr.io/nvidia/rapidsai/notebooks:26.10-cuda13-py3.13" in definition
    assert "chmod -R o+rX /opt/conda /home/rapids" in definition  # rapidsai/docker#669
    a = execs[0]
    built = Path(b[-2][: -len(".part")])
    assert built.exists() and str(built) in a and "--nv" in a
    assert f"{ROOT}:/home/rapids/playbook:ro" in a and "CUPY_CACHE_DIR=/home/rapids/cache/cupy" in a
    envs = ROOT / "cache" / "envs"  # the requirements, installed on the host
    assert f"{envs}:/home/rapids/envs" in a
    assert f"{data.parent}:/home/rapids/input:ro" in a and "/home/rapids/input/mine.h5ad" in a
    assert "PLAYBOOK_IP=127.0.0.1" in a
    p, calls = fake("--apptainer", "--public", **env)  # the second start builds nothing
    assert not [c for c in calls if c.startswith("build ")]
    a = [shlex.split(c) for c in calls if c.startswith("exec ")][0]
    assert "PLAYBOOK_IP=0.0.0.0" in a
    assert "ssh -L" in p.stderr
    p, calls = fake("--apptainer", "--headless", PLAYBOOK_APPTAINER_IMAGE=str(sif))
    assert p.returncode == 2 and f"PLAYBOOK_APPTAINER_IMAGE={sif} does not exist" in p.stderr
    sif.touch()
    p, calls = fake("--apptainer", "--headless", PLAYBOOK_APPTAINER_IMAGE=str(sif))
    assert p.returncode == 0 and str(sif) in [c for c in calls if c.startswith("exec ")][0]


def test_apptainer_without_fakeroot_says_how_to_build_it(fake, tmp_path):
    p, calls = fake("--apptainer", "--headless", PLAYBOOK_APPTAINER_CACHE=str(tmp_path), FAKE_BUILD_FAILS="1")  # fmt: skip
    assert (
        p.returncode == 2 and "--fakeroot" in p.stderr and "PLAYBOOK_APPTAINER_IMAGE=" in p.stderr
    )
    assert not [c for c in calls if c.startswith("exec ")]
    assert not list(tmp_path.glob("*.sif"))


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"FAKE_DOCKER": "down"}, "docker does not answer"),
        ({"FAKE_DRIVER": ""}, "no NVIDIA GPU/driver found"),
    ],
)
def test_unusable_docker_falls_back_to_local_saying_why(fake, env, reason):
    p, calls = fake("--headless", "--param", "no_such_knob=1", PLAYBOOK_VENV=sys.prefix, **env)
    assert reason in p.stderr and "running in a local virtual environment instead" in p.stderr
    assert p.returncode == 2 and "unknown parameter(s) no_such_knob" in p.stderr
    assert not [c for c in calls if c.startswith(("run ", "pull "))]


def test_no_docker_falls_back_to_local(fake, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PLAYBOOK_VENV": str(Path(sys.prefix))}
    p, _ = fake("--headless", "--param", "no_such_knob=1", **env)
    assert "docker was not found: running in a local virtual environment" in p.stderr
    assert p.returncode == 2 and "unknown parameter(s) no_such_knob" in p.stderr


def test_local_without_python_312_says_what_to_install(fake, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PLAYBOOK_VENV": str(tmp_path / "venv")}
    p, _ = fake("--local", **env)
    assert p.returncode == 2
    assert "no Python 3.12 or newer was found" in p.stderr and "apt install python3.12" in p.stderr
    assert not (tmp_path / "venv").exists()


def test_bad_options(fake):
    p, _ = fake("--port", "eighty")
    assert p.returncode == 2 and "not a number" in p.stderr
    p, _ = fake("--data", "/nonexistent/file.h5ad")
    assert p.returncode == 2 and "does not exist" in p.stderr


def _python_without_ensurepip(tmp_path):
    """A Python >= 3.12 whose venv module fails as Debian's does without python3.X-venv."""
    fake = tmp_path / "python3.12"
    fake.write_text(
        f"""#!/usr/bin/env bash
if [ "$1 $2" = "-m venv" ] && [ "$3" != "--without-pip" ]; then
  echo "The virtual environment was not created successfully because ensurepip is not available." >&2
  exit 1
fi
exec {sys.executable} "$@"
"""
    )
    fake.chmod(0o755)
    return fake


def test_python_without_ensurepip_takes_pip_from_the_wheelhouse(fake, tmp_path):
    house = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(house), "pip==26.3"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    venv = tmp_path / "venv"
    env = {"PLAYBOOK_PYTHON": str(_python_without_ensurepip(tmp_path)), "PLAYBOOK_VENV": str(venv)}
    p, _ = fake("--local", "--headless", "--wheelhouse", str(house), **env)
    # the venv and its pip came from the wheelhouse; the wheelhouse lacks the rest, which is said
    assert p.returncode == 2 and "installing the pinned requirements" in p.stderr, p.stderr
    assert "installing requirements-cpu.txt failed" in p.stderr
    out = subprocess.run([venv / "bin/python", "-m", "pip", "--version"], capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0 and out.stdout.startswith("pip 26.3")
    p, _ = fake("--local", "--headless", **{**env, "PLAYBOOK_VENV": str(tmp_path / "v2")})
    assert p.returncode == 2 and "has no ensurepip (install it: e.g. sudo apt install python3.12-venv)" in p.stderr  # fmt: skip
