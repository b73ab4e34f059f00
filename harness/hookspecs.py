"""Hook specifications of the ``harness`` pluggy project.

Registration hooks receive a ``register`` callback (the tox/llm pattern): a plugin calls
``register(SomeClass)`` once per class it contributes, so one plugin module can add many.
Observer hooks are called with all results collected and ignored; they must not change the run.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("harness")
hookimpl = pluggy.HookimplMarker("harness")


@hookspec
def harness_register_tasks(register: Callable[[Any], None]) -> None:
    """Register `harness.api.Task` instances."""


@hookspec
def harness_register_methods(register: Callable[[type], None]) -> None:
    """Register `harness.api.Method` subclasses."""


@hookspec
def harness_register_datasets(register: Callable[[type], None]) -> None:
    """Register `harness.api.Dataset` subclasses."""


@hookspec
def harness_register_metrics(register: Callable[[type], None]) -> None:
    """Register `harness.api.Metric` subclasses."""


@hookspec
def harness_register_executors(register: Callable[[type], None]) -> None:
    """Register `harness.api.Executor` subclasses (where `harness grid` runs its jobs)."""


@hookspec
def harness_run_started(run: dict[str, Any]) -> None:
    """A run (one or more cells) is about to start; ``run`` describes it."""


@hookspec
def harness_cell_started(cell: dict[str, Any]) -> None:
    """One method × dataset cell is about to be evaluated."""


@hookspec
def harness_cell_finished(cell: dict[str, Any], record: dict[str, Any]) -> None:
    """A cell finished; ``record`` is the stored result record (``status`` says ok or failed)."""


@hookspec
def harness_run_finished(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """A run finished; ``records`` are its cells' records."""


@hookspec
def harness_cell_progress(cell: dict[str, Any], done: int, total: int | None) -> None:
    """``done`` samples of a cell have been scored (``total`` if known); for live progress views."""
