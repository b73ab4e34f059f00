"""Imported once by the local executor's fork server, so that worker processes start with torch, the
core and every entry-point plugin already imported (plugin folders are still loaded per worker)."""

from __future__ import annotations

import importlib.metadata

from ..plugins import ENTRY_POINT_GROUP
from . import worker  # noqa: F401  (the job function and the runner behind it)

for _entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
    try:
        _entry_point.load()
    except Exception:  # reported properly when the worker loads its plugins
        pass
