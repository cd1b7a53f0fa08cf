"""Command line: ``scplaybook demo|fetch|datasets|run``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._errors import PlaybookError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scplaybook", description="Single-cell RNA-seq playbook (GPU or CPU)."
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="write the synthetic demo dataset (deterministic) as .h5ad")
    d.add_argument("--out", type=Path, help="file to write (default: the data cache)")
    d.add_argument("--n-cells", type=int, default=6000)
    d.add_argument("--n-genes", type=int, default=10000)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    f = sub.add_parser(
        "fetch", help="download a registered dataset (or URL) with checksum verification"
    )
    f.add_argument("name", help="dataset name (see 'scplaybook datasets') or URL")
    f.add_argument(
        "--cache", type=Path, help="cache folder (default: data/cache or $SCPLAYBOOK_DATA)"
    )
    f.add_argument("--sha256", help="expected SHA-256 (for a URL)")
    f.add_argument(
        "--allow-unverified", action="store_true", help="accept a file with no known checksum"
    )
    f.add_argument("--retries", type=int, default=3)
    f.add_argument("--timeout", type=float, default=30.0)
    sub.add_parser("datasets", help="list the registered datasets")
    r = sub.add_parser("run", help="run the notebook headless into a new results folder")
    r.add_argument(
        "--data", type=Path, help="input .h5ad, 10x .h5 or 10x folder (default: the demo dataset)"
    )
    r.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        help="folder for run folders (default: results)",
    )
    r.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="notebook parameter"
    )
    r.add_argument("--notebook", type=Path, help="notebook to run (default: the playbook's)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2: bad input, 1: failed run, 3: kernel died)."""
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "demo":
            from .datasets import default_cache, demo_file_name, write_demo

            out = args.out or default_cache() / demo_file_name(
                args.n_cells, args.n_genes, args.seed
            )
            write_demo(
                out, n_cells=args.n_cells, n_genes=args.n_genes, seed=args.seed, device=args.device
            )
            print(out)
        elif args.cmd == "fetch":
            from .datasets import fetch

            print(
                fetch(
                    args.name, cache_dir=args.cache, sha256=args.sha256, allow_unverified=args.allow_unverified,
                    retries=args.retries, timeout=args.timeout,
                )
            )  # fmt: skip
        elif args.cmd == "datasets":
            from .datasets import registry

            for name, e in registry().items():
                print(
                    f"{name:18s} {'sha256 known' if e.get('sha256') else 'no checksum'}  {e['description']}"
                )
        elif args.cmd == "run":
            from .runner import RunFailed, run_playbook
            from .runner._run import parse_params

            try:
                path = run_playbook(
                    data=args.data,
                    out=args.out,
                    params=parse_params(args.param),
                    notebook=args.notebook,
                )
            except RunFailed as e:
                print(f"error: {e}", file=sys.stderr)
                return e.exit_code
            print(path)
    except PlaybookError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
