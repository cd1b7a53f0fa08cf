"""Run a command in its own process group, and on timeout stop the whole group (its children too)."""

from __future__ import annotations

import os
import signal
import subprocess


def run(cmd: list[str], *, timeout: float, **kw) -> subprocess.CompletedProcess:
    """``subprocess.run`` with text output captured; on timeout the command's whole process group
    is killed (a benchmark's worker processes with it), then ``TimeoutExpired`` is raised."""
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        start_new_session=True, **kw,
    ) as p:  # fmt: skip
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)
