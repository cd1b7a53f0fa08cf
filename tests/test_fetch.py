"""The fetcher against a loopback HTTP server started by the test."""

import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import scplaybook as scp
from scplaybook import DownloadError, ParameterError

BODY = os.urandom(300_000)
SHA = hashlib.sha256(BODY).hexdigest()


class Server:
    def __init__(self):
        self.range_ok = True
        self.drops = 0  # requests left that are cut after `cut_at` bytes
        self.cut_at = 100_000
        self.status = 200
        self.send_length = True
        self.requests = []
        srv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                srv.requests.append(self.headers.get("Range"))
                if srv.status != 200:
                    self.send_error(srv.status)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and srv.range_ok:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(BODY):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(BODY) - 1}/{len(BODY)}")
                else:
                    self.send_response(200)
                body = BODY[start:]
                if srv.send_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if srv.drops > 0:
                    srv.drops -= 1
                    self.wfile.write(body[: srv.cut_at])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data.h5ad"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def fetch(server, tmp_path, **kw):
    kw.setdefault("sha256", SHA)
    return scp.datasets.fetch(
        server.url,
        cache_dir=tmp_path,
        progress=False,
        retries=kw.pop("retries", 3),
        timeout=5,
        **kw,
    )


def leftovers(tmp_path):
    return sorted(
        p.name for p in tmp_path.iterdir() if not p.name.startswith(".data.h5ad.verified")
    )


def test_plain_download_verifies_and_moves(server, tmp_path):
    p = fetch(server, tmp_path)
    assert p.read_bytes() == BODY and leftovers(tmp_path) == ["data.h5ad"]


def test_resume_with_range(server, tmp_path):
    (tmp_path / "data.h5ad.part").write_bytes(BODY[:120_000])
    p = fetch(server, tmp_path)
    assert p.read_bytes() == BODY and server.requests == ["bytes=120000-"]


def test_server_ignoring_range_starts_over(server, tmp_path):
    server.range_ok = False
    (tmp_path / "data.h5ad.part").write_bytes(b"garbage" * 1000)
    assert fetch(server, tmp_path).read_bytes() == BODY


def test_dropped_connection_is_resumed(server, tmp_path):
    server.drops = 2
    p = fetch(server, tmp_path)
    assert p.read_bytes() == BODY
    assert server.requests[0] is None and server.requests[1] == "bytes=100000-"


def test_drops_past_retries_leave_no_final_file(server, tmp_path):
    server.drops = 10
    server.cut_at = 10_000
    with pytest.raises(DownloadError, match="failed 3 times"):
        fetch(server, tmp_path, retries=2)
    assert not (tmp_path / "data.h5ad").exists()
    assert (tmp_path / "data.h5ad.part").exists()  # kept for the next resume
    assert len(server.requests) == 3  # bounded
    server.drops = 0
    assert fetch(server, tmp_path).read_bytes() == BODY


def test_short_body_without_content_length_fails_checksum(server, tmp_path):
    server.send_length = False
    server.drops = 1
    server.cut_at = 5000
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(server, tmp_path, retries=0)
    assert leftovers(tmp_path) == []


def test_wrong_checksum_keeps_earlier_good_copy(server, tmp_path):
    good = tmp_path / "data.h5ad"
    good.write_bytes(b"an earlier good copy")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(server, tmp_path, sha256="0" * 64)
    assert good.read_bytes() == b"an earlier good copy"
    assert not (tmp_path / "data.h5ad.part").exists()


@pytest.mark.parametrize(("status", "n_requests"), [(404, 1), (500, 3)])
def test_http_errors(server, tmp_path, status, n_requests):
    server.status = status
    with pytest.raises(DownloadError, match=str(status)):
        fetch(server, tmp_path, retries=2)
    assert len(server.requests) == n_requests
    assert leftovers(tmp_path) == []


def test_no_checksum_refused_unless_allowed(server, tmp_path):
    with pytest.raises(ParameterError, match="allow-unverified"):
        fetch(server, tmp_path, sha256=None)
    assert fetch(server, tmp_path, sha256=None, allow_unverified=True).read_bytes() == BODY


def test_registry_entries_without_hash_are_refused(tmp_path):
    with pytest.raises(ParameterError, match="no known SHA-256"):
        scp.datasets.fetch("dli_census", cache_dir=tmp_path)
    assert {"dli_census", "pbmc3k", "mouse_brain_1.3m"} <= set(scp.datasets.registry())


def test_cached_file_reverified(server, tmp_path):
    p = fetch(server, tmp_path)
    n = len(server.requests)
    assert fetch(server, tmp_path) == p and len(server.requests) == n  # cached, no request
    data = bytearray(p.read_bytes())
    data[1000] ^= 0xFF  # same size, flipped byte, new mtime
    p.write_bytes(bytes(data))
    assert fetch(server, tmp_path).read_bytes() == BODY
    assert len(server.requests) == n + 1


def test_no_network_points_to_demo(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(DownloadError, match="without --data"):
        scp.datasets.fetch(
            f"http://127.0.0.1:{port}/x.h5ad", cache_dir=tmp_path, sha256=SHA, progress=False
        )
