"""Plugin discovery and the registries they fill.

Load order (tox/datasette style): the core's own task plugin, then every entry point in the group
``harness`` (the built-ins under ``plugins/`` are entry points of this very package, so they load
exactly as a third-party plugin does), then unpackaged ``*.py`` files from ``--plugins-dir`` /
``HARNESS_PLUGINS_DIR``. A plugin that fails to import or to register is recorded with its error and
the others still load; a duplicate name is an error naming both owners.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pluggy

from . import hookspecs, tasks
from .api import Dataset, Method, Metric, Task
from .errors import UsageError
from .registry import Registry

ENTRY_POINT_GROUP = "harness"
PLUGINS_DIR_ENV = "HARNESS_PLUGINS_DIR"


@dataclasses.dataclass
class PluginInfo:
    """What `harness plugins` shows for one plugin."""

    name: str
    source: str
    version: str | None
    error: str | None = None
    provides: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    digest: str | None = None
    """Identity of the plugin's code (see `Plugins.source_digest`); computed on first use."""

    @property
    def ok(self) -> bool:
        return self.error is None


def _short_error(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class Plugins:
    """A loaded plugin set: the pluggy manager, the four registries and per-plugin load reports."""

    def __init__(self, plugins_dirs: list[Path] | None = None, entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("harness")
        self.pm.add_hookspecs(hookspecs)
        self.tasks: Registry[Task] = Registry("task")
        self.methods: Registry[type[Method]] = Registry("method")
        self.datasets: Registry[type[Dataset]] = Registry("dataset")
        self.metrics: Registry[type[Metric]] = Registry("metric")
        self.info: dict[str, PluginInfo] = {}

        self._add(tasks, "harness.tasks", "harness (core)", _harness_version())
        if entry_points:
            self._load_entry_points()
        for directory in plugins_dirs or []:
            self._load_directory(directory)
        self._collect_registrations()

    # -- discovery -------------------------------------------------------------------------------
    def _add(self, module: ModuleType | object, name: str, source: str, version: str | None) -> None:
        try:
            self.pm.register(module, name=name)
        except Exception as exc:  # pluggy validation errors, e.g. an unknown hook argument
            self.info[name] = PluginInfo(name, source, version, error=_short_error(exc))
            return
        self.info[name] = PluginInfo(name, source, version)

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else "unknown distribution"
            version = dist.version if dist is not None else None
            source = f"entry point {ep.value} ({dist_name})"
            if ep.name in self.info:
                taken = self.info[ep.name].source
                self.info[f"{ep.name} ({dist_name})"] = PluginInfo(
                    ep.name, source, version, error=f"plugin name {ep.name!r} is already used by {taken}"
                )
                continue
            try:
                module = ep.load()
            except Exception as exc:
                self.info[ep.name] = PluginInfo(ep.name, source, version, error=_short_error(exc))
                continue
            self._add(module, ep.name, source, version)

    def _load_directory(self, directory: Path) -> None:
        if not directory.is_dir():
            raise UsageError(f"plugins directory {directory} does not exist or is not a directory")
        for path in sorted(directory.glob("*.py")):
            name = f"{path.stem} ({directory.name})" if path.stem in self.info else path.stem
            module_name = f"harness_dir_plugin_{path.stem}"
            try:
                spec = importlib.util.spec_from_file_location(module_name, path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            except Exception as exc:
                sys.modules.pop(module_name, None)
                self.info[name] = PluginInfo(name, f"file {path}", None, error=_short_error(exc))
                continue
            self._add(module, name, f"file {path}", None)

    # -- registration ----------------------------------------------------------------------------
    def _collect_registrations(self) -> None:
        kinds: list[tuple[str, Registry[Any], type | None]] = [
            ("harness_register_tasks", self.tasks, None),
            ("harness_register_methods", self.methods, Method),
            ("harness_register_datasets", self.datasets, Dataset),
            ("harness_register_metrics", self.metrics, Metric),
        ]
        for hook_name, registry, base in kinds:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                owner = impl.plugin_name
                if not self.info[owner].ok:
                    continue
                try:
                    impl.function(register=self._registrar(registry, base, owner))
                except UsageError:
                    raise
                except Exception as exc:
                    self.info[owner].error = _short_error(exc)

    def _registrar(self, registry: Registry[Any], base: type | None, owner: str) -> Callable[[Any], None]:
        def register(entry: Any) -> None:
            if base is not None and not (isinstance(entry, type) and issubclass(entry, base)):
                raise TypeError(f"{owner}: register() expects a {base.__name__} subclass, got {entry!r}")
            if base is None and not isinstance(entry, Task):
                raise TypeError(f"{owner}: register() expects a Task, got {entry!r}")
            registry.add(entry.name, entry, owner, tuple(getattr(entry, "aliases", ())))
            self.info[owner].provides.setdefault(registry.kind + "s", []).append(entry.name)

        return register

    # -- lookups ---------------------------------------------------------------------------------
    def plugin_version(self, owner: str) -> str | None:
        return self.info[owner].version

    def source_digest(self, owner: str) -> str:
        """What identifies a plugin's code in cache keys: ``sha256:<module file>`` for code that can be
        edited in place (a plugins-dir file, an editable install), ``version:<v>`` for an installed package."""
        info = self.info[owner]
        if info.digest is None:
            info.digest = module_source_digest(self.pm.get_plugin(owner), info.version)
        return info.digest

    def failures(self) -> list[PluginInfo]:
        return [info for info in self.info.values() if not info.ok]


def module_source_digest(module: object, version: str | None) -> str:
    """sha256 of a module's file unless it lives in site-packages (then the distribution version)."""
    file = getattr(module, "__file__", None)  # registered objects may be modules or plain instances
    installed = file is not None and any(part in {"site-packages", "dist-packages"} for part in Path(file).parts)
    if file is not None and not installed and Path(file).is_file():
        return "sha256:" + hashlib.sha256(Path(file).read_bytes()).hexdigest()
    return f"version:{version or 'unknown'}"


def _harness_version() -> str:
    try:
        return importlib.metadata.version("harness")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


_default: tuple[tuple[Path, ...], Plugins] | None = None


def plugins_dirs_from_env() -> list[Path]:
    value = os.environ.get(PLUGINS_DIR_ENV, "")
    return [Path(part) for part in value.split(os.pathsep) if part]


def get_plugins(plugins_dirs: list[Path] | None = None) -> Plugins:
    """The process-wide plugin set for ``HARNESS_PLUGINS_DIR`` plus ``plugins_dirs``, loaded once per set of dirs."""
    global _default
    key = tuple(path.resolve() for path in [*plugins_dirs_from_env(), *(plugins_dirs or [])])
    if _default is None or _default[0] != key:
        _default = (key, Plugins(list(key)))
    return _default[1]


def reset_plugins() -> None:
    """Forget the loaded plugin set (tests, or after changing ``HARNESS_PLUGINS_DIR``)."""
    global _default
    _default = None

