"""Headless runs of the playbook notebook and the results folder."""

from ._run import Run, RunFailed, new_run_dir, notebook_parameters, parse_params, run_playbook

__all__ = ["Run", "RunFailed", "new_run_dir", "notebook_parameters", "parse_params", "run_playbook"]
