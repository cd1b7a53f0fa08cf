"""Time a kernel's start and the notebook's set-up cell, with and without importing ahead.

Three ways, each in a new kernel started by jupyter_client as the runner starts one:

- ``none``: as the runner does;
- ``exec``: a thread that imports rapids-singlecell (``scp.gpu_available()``), started by the
  kernel's ``exec_lines`` while ipykernel starts;
- ``launch``: the same thread started before ipykernel is imported (a launcher script).

Usage::

    python benchmarks/kernel_preload.py [--rounds 2]

Prints one line per kernel: seconds to ready, seconds of the set-up cell, and their sum.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

PRELOAD = (
    'threading.Thread(target=lambda: __import__("scplaybook").gpu_available(), daemon=True).start()'
)
SETUP = (
    "import scplaybook as scp\n"
    "run = scp.runner.Run.start(OUT, params={})\n"
    "import scplaybook.pp, scplaybook.tl, scplaybook.pl"
)


def one(mode: str, tmp: Path) -> tuple[float, float]:
    """Start a kernel the ``mode`` way, run a parameters cell and the set-up cell; return the times."""
    from jupyter_client.manager import KernelManager

    t0 = time.perf_counter()
    km = KernelManager(kernel_name="python3")
    extra = ["--HistoryManager.hist_file=:memory:"]
    if mode == "exec":
        extra.append(f"--IPKernelApp.exec_lines=['import threading; {PRELOAD}']")
    elif mode == "launch":
        launcher = tmp / "launch.py"
        launcher.write_text(
            f"import sys, threading\nsys.path.pop(0)\n{PRELOAD}\n"
            "from ipykernel import kernelapp\nkernelapp.launch_new_instance()\n"
        )
        spec = copy.copy(km.kernel_spec)
        argv = list(spec.argv)
        i = argv.index("ipykernel_launcher")
        argv[i - 1 : i + 1] = [str(launcher)]  # "-m ipykernel_launcher" -> the launcher
        spec.argv = argv
        km._kernel_spec = spec
    km.start_kernel(extra_arguments=extra)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        t1 = time.perf_counter()
        for code in ("x = 1", f"OUT = {str(tmp / mode)!r}\n{SETUP}"):
            reply = kc.execute_interactive(code, timeout=300, output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"{mode}: {reply['content'].get('evalue')}")
        return t1 - t0, time.perf_counter() - t1
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main() -> None:
    """Run the three ways alternately and print their times."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.rounds):
            for mode in ("none", "exec", "launch"):
                ready, setup = one(mode, Path(d))
                print(
                    f"{mode:6s} ready {ready:.2f} s, set-up cell {setup:.2f} s, sum {ready + setup:.2f} s"
                )


if __name__ == "__main__":
    main()
