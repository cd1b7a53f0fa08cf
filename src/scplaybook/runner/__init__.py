"""Headless runs of the playbook notebook and the results folder."""

from ._run import (
    Run,
    RunFailed,
    check_params,
    notebook_parameter_names,
    notebook_parameters,
    run_playbook,
)

__all__ = [
    "Run",
    "RunFailed",
    "check_params",
    "notebook_parameter_names",
    "notebook_parameters",
    "run_playbook",
]
