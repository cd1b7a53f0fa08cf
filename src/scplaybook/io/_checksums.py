"""SHA-256 sums beside results, so that a changed or corrupted file is noticed when read back.

HDF5 does not notice bytes flipped in the middle of a dataset: anndata then loads a different matrix
without a word. A ``SHA256SUMS`` file (the format of ``sha256sum``) beside the results closes that gap.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .._errors import InputError
from ._write import atomic_write_text

SUMS = "SHA256SUMS"
_CHUNK = 1 << 20
_SKIP = {SUMS, "STATUS"}


def sha256sum(path: str | Path) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def result_files(folder: Path) -> list[Path]:
    """Return the files below ``folder``, sorted: not the hidden ones (files being written) or zips."""
    return [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and p.suffix != ".zip"
    ]


def write_checksums(folder: str | Path) -> Path:
    """Write ``folder/SHA256SUMS`` for every file below ``folder`` (but itself, STATUS and zips).

    A file already listed and not modified since the last ``SHA256SUMS`` keeps its digest, so a
    second call (the runner's, after the notebook's) hashes only what is new.
    """
    folder = Path(folder)
    sums = folder / SUMS
    known: dict[str, str] = {}
    if sums.is_file():
        since = sums.stat().st_mtime_ns
        for line in sums.read_text().splitlines():
            digest, _, name = line.partition("  ")
            p = folder / name
            if p.is_file() and p.stat().st_mtime_ns <= since:
                known[name] = digest
    lines = []
    for p in result_files(folder):
        if p.name not in _SKIP:
            name = p.relative_to(folder).as_posix()
            lines.append(f"{known.get(name) or sha256sum(p)}  {name}")
    return atomic_write_text(sums, "\n".join(lines) + "\n")


def verify_checksum(path: str | Path) -> bool:
    """Check ``path`` against a ``SHA256SUMS`` beside it; ``False`` when none lists it.

    Returns
    -------
    ``True`` when the file matches its recorded SHA-256, ``False`` when none is recorded.

    Raises
    ------
    InputError
        When the file's SHA-256 differs from the recorded one.
    """
    path = Path(path)
    sums = path.parent / SUMS
    if not sums.is_file():
        return False
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name == path.name:
            if sha256sum(path) != digest:
                raise InputError(
                    f"{path} does not match the SHA-256 recorded in {sums} when it was written: the file "
                    "was changed or is corrupt (HDF5 does not notice flipped bytes). Use a backup or rerun."
                )
            return True
    return False
