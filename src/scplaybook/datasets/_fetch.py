"""A pooch-style fetcher: known hashes, resumable downloads, nothing bad under the final name."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .._errors import DownloadError, ParameterError
from .._settings import logger
from ..io._checksums import sha256sum

_CHUNK = 1 << 20


def registry() -> dict[str, dict[str, Any]]:
    """Return the known datasets: name → url, filename, size, sha256, licence, citation, description.

    Returns
    -------
    ``{name: {url, filename, size, sha256, licence, citation, description}}``.
    """
    text = resources.files("scplaybook.datasets").joinpath("registry.json").read_text()
    return json.loads(text)["datasets"]


def default_cache() -> Path:
    """Cache folder: ``$SCPLAYBOOK_DATA``, else ``data/cache`` of the playbook checkout, else ``~/.cache``.

    Returns
    -------
    The folder (not created).
    """
    env = os.environ.get("SCPLAYBOOK_DATA")
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "data" / "README.md").exists() and (parent / "setup").is_dir():
            return parent / "data" / "cache"
    return Path.home() / ".cache" / "scplaybook"


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified.json")


def _verified(path: Path, size: int | None, sha256: str | None) -> bool:
    """Cheap size check every time; full hash again only when the file's mtime changed."""
    st = path.stat()
    if size is not None and st.st_size != size:
        return False
    if sha256 is None:
        return True
    stamp = _stamp_path(path)
    try:
        rec = json.loads(stamp.read_text())
        if (
            rec["mtime_ns"] == st.st_mtime_ns
            and rec["size"] == st.st_size
            and rec["sha256"] == sha256
        ):
            return True
    except (OSError, ValueError, KeyError):
        pass
    if sha256sum(path) != sha256:
        return False
    stamp.write_text(json.dumps({"mtime_ns": st.st_mtime_ns, "size": st.st_size, "sha256": sha256}))
    return True


def fetch(
    name_or_url: str,
    *,
    cache_dir: str | Path | None = None,
    sha256: str | None = None,
    size: int | None = None,
    filename: str | None = None,
    allow_unverified: bool = False,
    retries: int = 3,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download a registry dataset (or a URL) into the cache and return its path.

    The download goes to ``<name>.part`` and is resumed there (HTTP Range) after an interruption;
    only a complete file whose SHA-256 matches is renamed to its final name. A wrong checksum or
    a cut connection never leaves a file under the final name, and an earlier good copy is kept.

    Parameters
    ----------
    name_or_url
        A name from :func:`registry` or an ``http(s)://`` URL.
    cache_dir
        Where files go (default: :func:`default_cache`).
    sha256, size, filename
        For a URL: the expected hash, size in bytes and file name.
    allow_unverified
        Accept a file with no known checksum (refused otherwise).
    retries
        Attempts after a dropped connection or a server error (5xx), resuming each time.
    timeout
        Seconds without data before a connection counts as dropped.
    progress
        Show a progress bar.

    Returns
    -------
    The file's path in the cache.

    Raises
    ------
    ParameterError
        Unknown name, or no checksum without ``allow_unverified``.
    DownloadError
        Not found, server errors past the retries, no network, or a checksum mismatch.
    """
    reg = registry()
    if name_or_url.startswith(("http://", "https://")):
        url = name_or_url
        filename = filename or url.rstrip("/").rsplit("/", 1)[-1]
        label = filename
    elif name_or_url in reg:
        entry = reg[name_or_url]
        url, filename = entry["url"], filename or entry["filename"]
        sha256 = sha256 or entry.get("sha256")
        size = size or entry.get("size")
        label = name_or_url
    else:
        raise ParameterError(
            f"dataset {name_or_url!r} is not in the registry; known: {', '.join(reg)}; or give a URL."
        )
    if sha256 is None and not allow_unverified:
        raise ParameterError(
            f"{label} has no known SHA-256, so a corrupt download could not be detected. "
            "Pass --allow-unverified (allow_unverified=True) to download it anyway, or give --sha256."
        )
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / filename
    if final.exists():
        if _verified(final, size, sha256):
            logger.info(f"{label}: using verified copy {final}")
            return final
        logger.warning(
            f"{label}: {final} does not match its expected size/checksum; downloading again."
        )
    part = cache / f"{filename}.part"
    attempt = 0
    while True:
        try:
            _download(url, part, timeout=timeout, progress=progress, label=label)
            break
        except _Retryable as e:
            attempt += 1
            if attempt > retries:
                raise DownloadError(
                    f"{label}: download from {url} failed {attempt} times ({e}). The partial file {part} "
                    "is kept and will be resumed next time; nothing was written to the final name."
                ) from e
            logger.warning(
                f"{label}: {e}; retrying ({attempt}/{retries}) from byte {part.stat().st_size if part.exists() else 0}"
            )
            time.sleep(min(0.2 * 2**attempt, 5.0))
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{label}: downloaded {got} bytes, expected {size}; the bad file was removed."
        )
    digest = sha256sum(part)
    if sha256 is not None and digest != sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{label}: checksum mismatch (got {digest[:12]}..., expected {sha256[:12]}...); the bad download "
            f"was removed and {final} was left as it was. Try again later or check the URL."
        )
    os.replace(part, final)
    st = final.stat()
    _stamp_path(final).write_text(
        json.dumps({"mtime_ns": st.st_mtime_ns, "size": st.st_size, "sha256": digest})
    )
    logger.info(f"{label}: saved {final} ({st.st_size} bytes, sha256 {digest[:12]}...)")
    return final


class _Retryable(Exception):
    pass


def _download(url: str, part: Path, *, timeout: float, progress: bool, label: str) -> None:
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "scplaybook"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            return  # nothing left to fetch: the .part is complete; the checksum decides
        if e.code >= 500:
            raise _Retryable(f"server error HTTP {e.code}") from e
        raise DownloadError(
            f"{label}: {url} answered HTTP {e.code} {e.reason}; check the URL or the registry entry."
        ) from e
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(
            reason, socket.gaierror | ConnectionRefusedError | OSError
        ) and not isinstance(reason, TimeoutError):
            raise DownloadError(
                f"{label}: cannot reach {url} ({reason}): no network? The embedded demo dataset needs none: "
                "run the playbook without --data."
            ) from e
        raise _Retryable(str(reason)) from e
    except (TimeoutError, ConnectionError) as e:
        raise _Retryable(str(e)) from e
    with resp:
        if have and resp.status == 200:
            logger.warning(
                f"{label}: the server ignores Range requests; starting the download over."
            )
            have = 0
        mode = "ab" if have else "wb"
        length = resp.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        total = have + expected if expected is not None else None
        got = 0
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                desc=label,
                disable=not progress,
            ) as bar,
        ):
            try:
                while True:
                    block = resp.read1(_CHUNK)
                    if not block:
                        break
                    f.write(block)
                    got += len(block)
                    bar.update(len(block))
            except (TimeoutError, ConnectionError, OSError) as e:
                raise _Retryable(f"connection dropped after {have + got} bytes ({e})") from e
            except Exception as e:  # http.client.IncompleteRead and friends
                raise _Retryable(
                    f"connection dropped after {have + got} bytes ({type(e).__name__})"
                ) from e
        if expected is not None and got < expected:
            raise _Retryable(f"body shorter than Content-Length ({got} of {expected} bytes)")
