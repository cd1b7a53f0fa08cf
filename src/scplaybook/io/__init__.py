"""Reading inputs and writing results."""

from ._checksums import verify_checksum, write_checksums
from ._read import check_raw_counts, read
from ._write import atomic_path, atomic_write, atomic_write_h5ad, atomic_write_text

__all__ = [
    "atomic_path",
    "atomic_write",
    "atomic_write_h5ad",
    "atomic_write_text",
    "check_raw_counts",
    "read",
    "verify_checksum",
    "write_checksums",
]
