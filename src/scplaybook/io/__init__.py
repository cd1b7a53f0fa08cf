"""Reading inputs and writing results."""

from ._checksums import verify_checksum
from ._read import check_raw_counts, read

__all__ = [
    "check_raw_counts",
    "read",
    "verify_checksum",
]
