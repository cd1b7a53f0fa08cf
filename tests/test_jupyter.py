"""--local really serves JupyterLab: token required, loopback only, no foreign Host or cross-origin writes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, headers=None, method="GET", data=None):
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except urllib.error.URLError as e:
        return -1, str(e)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    (out / "earlier-run.txt").write_text("keep me")
    port = _free_port()
    env = {
        **os.environ,
        "PLAYBOOK_VENV": sys.prefix,
        "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin",
    }
    env.pop("JUPYTER_TOKEN", None)
    log = open(out.parent / "launcher.log", "w+")
    proc = subprocess.Popen(
        ["bash", str(ROOT / "setup" / "start_playbook.sh"), "--local", "--port", str(port), "--out", str(out)],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        # Ctrl-C as on a terminal, even when the tests themselves run as a background job (which
        # starts with SIGINT ignored, and children inherit that)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    token = None
    deadline = time.time() + 120
    while time.time() < deadline:
        log.seek(0)
        m = re.search(r"token=([0-9a-f]+)", log.read())
        if m:
            token = m.group(1)
            status, _ = _get(
                f"http://127.0.0.1:{port}/api/status", {"Authorization": f"token {token}"}
            )
            if status == 200:
                break
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    log.seek(0)
    text = log.read()
    if token is None or proc.poll() is not None:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail(f"JupyterLab did not start:\n{text}")
    yield {"port": port, "token": token, "proc": proc, "out": out, "log": log}
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_token_required(server):
    base = f"http://127.0.0.1:{server['port']}"
    assert _get(f"{base}/api/contents")[0] == 403
    assert _get(f"{base}/api/contents", {"Authorization": "token wrong"})[0] == 403
    status, body = _get(f"{base}/api/contents", {"Authorization": f"token {server['token']}"})
    assert status == 200 and "scRNA_analysis_preprocessing.ipynb" in body
    assert len(server["token"]) >= 48


def test_loopback_only(server):
    port = server["port"]
    listening = set()
    for line in (
        Path("/proc/net/tcp").read_text().splitlines()[1:]
        + Path("/proc/net/tcp6").read_text().splitlines()[1:]
    ):
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
            listening.add(local.rsplit(":", 1)[0])
    assert listening and listening <= {"0100007F", "00000000000000000000000001000000"}, listening


def test_foreign_host_and_cross_origin_refused(server):
    import http.cookiejar

    base = f"http://127.0.0.1:{server['port']}"
    auth = {"Authorization": f"token {server['token']}"}
    assert _get(f"{base}/api/contents", {**auth, "Host": "evil.example.com"})[0] == 403
    # a browser that logged in once carries the session cookie; a foreign page's POST must not ride on it
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{base}/lab?token={server['token']}", timeout=10).read()
    assert any(c.name.startswith("username-") for c in jar)
    req = urllib.request.Request(
        f"{base}/api/contents", data=b'{"type": "notebook"}', method="POST",
        headers={"Origin": "http://evil.example.com", "Content-Type": "application/json"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(req, timeout=10)
    assert e.value.code in (403, 404)
    assert not list(ROOT.glob("Untitled*.ipynb"))


def test_token_not_on_any_command_line(server):
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert server["token"] not in cmd.read_bytes().decode(errors="replace")
        except OSError:
            pass
    server["log"].seek(0)
    assert server["log"].read().count(server["token"]) == 1  # only the URL printed for the user


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_notebook_renders_in_chromium(server):
    ARTIFACTS.mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{server['port']}/lab/tree/scRNA_analysis_preprocessing.ipynb?token={server['token']}"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1400,1000", "--virtual-time-budget=25000", f"--user-data-dir={server['out'].parent / 'chrome'}"]  # fmt: skip
    shot = ARTIFACTS / "jupyterlab.png"
    subprocess.run(
        ["chromium", *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120
    )
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    assert (
        shot.exists()
        and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        and shot.stat().st_size > 10_000
    )
    assert "Single-cell RNA-seq analysis, end to end" in dom and "jp-Notebook" in dom


def test_stop_is_clean_and_keeps_results(server):
    os.killpg(server["proc"].pid, signal.SIGINT)
    os.killpg(server["proc"].pid, signal.SIGINT)
    try:
        server["proc"].wait(timeout=60)
    except subprocess.TimeoutExpired:
        server["log"].seek(0)
        pytest.fail(
            "the launcher did not stop within 60 s of Ctrl-C:\n" + server["log"].read()[-3000:]
        )
    assert (server["out"] / "earlier-run.txt").read_text() == "keep me"
