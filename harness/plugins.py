"""Plugin discovery and the registries they fill.

Load order (tox/datasette style): the core's own task plugin, then every entry point in the group
``harness`` (the built-ins under ``plugins/`` are entry points of this very package, so they load
exactly as a third-party plugin does), then unpackaged ``*.py`` files from ``--plugins-dir`` /
``HARNESS_PLUGINS_DIR``. A plugin that fails to import or to register is recorded with its error and
the others still load. A registration whose name (or an alias) is already taken — by a built-in or by
a plugin loaded earlier — is refused: the first owner keeps the name and the later plugin is reported
as failed naming both owners. A failed plugin contributes nothing: whatever it registered before or
after the failure is dropped and its hooks are unregistered, so `harness plugins` saying FAILED and a
run crediting that plugin can never both be true.

Every registered name (and alias) must match `NAME_PATTERN`: names become file and folder names
(run ids, training folders, cache keys) and command-line words, so ``../x`` or ``A B`` are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pluggy

from . import hookspecs, tasks
from .api import Dataset, Executor, Method, Metric, Task
from .errors import UsageError
from .registry import DuplicateName, Registry

ENTRY_POINT_GROUP = "harness"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
"""What a method, dataset, metric, executor or task name (or alias) may look like."""
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


def _short_error(exc: BaseException, plugin_file: Path | None = None) -> str:
    """``Type: message (where)``: the plugin's own file and line, then the deepest real frame if elsewhere.

    Import machinery frames (``<frozen importlib._bootstrap>``) are never shown: they are the same for
    every plugin. A syntax error points at the offending line itself.
    """
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    places = []
    if isinstance(exc, SyntaxError) and exc.filename:
        places.append(f"{exc.filename}:{exc.lineno}")
        exc_text = exc.msg
    else:
        exc_text = str(exc)
        if plugin_file is not None:
            own = [f for f in frames if _same_file(f.filename, plugin_file)]
            if own:
                places.append(f"{own[-1].filename}:{own[-1].lineno}")
        if frames and not (places and _same_file(frames[-1].filename, plugin_file)):
            places.append(f"{frames[-1].filename}:{frames[-1].lineno}")
    where = f" ({' via '.join(places)})" if places else ""
    return f"{type(exc).__name__}: {exc_text}{where}"


def _same_file(name: str, path: Path | None) -> bool:
    if path is None:
        return False
    try:
        return Path(name).resolve() == path.resolve()
    except OSError:
        return False


def _module_file(module: str) -> Path | None:
    """The source file of an entry point's module, without importing it (None if it cannot be found)."""
    try:
        spec = importlib.util.find_spec(module)
    except Exception:  # a parent package that fails to import
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


class Plugins:
    """A loaded plugin set: the pluggy manager, the registries and per-plugin load reports."""

    def __init__(self, plugins_dirs: list[Path] | None = None, entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("harness")
        self.pm.add_hookspecs(hookspecs)
        self.tasks: Registry[Task] = Registry("task")
        self.methods: Registry[type[Method]] = Registry("method")
        self.datasets: Registry[type[Dataset]] = Registry("dataset")
        self.metrics: Registry[type[Metric]] = Registry("metric")
        self.executors: Registry[type[Executor]] = Registry("executor")
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
            self.info[name] = PluginInfo(name, source, version, error=_short_error(exc, _file_of(module)))
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
                error = _short_error(exc, _module_file(ep.module))
                self.info[ep.name] = PluginInfo(ep.name, source, version, error=error)
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
                self.info[name] = PluginInfo(name, f"file {path}", None, error=_short_error(exc, path))
                continue
            self._add(module, name, f"file {path}", None)

    # -- registration ----------------------------------------------------------------------------
    def _collect_registrations(self) -> None:
        kinds: list[tuple[str, Registry[Any], type | None]] = [
            ("harness_register_tasks", self.tasks, None),
            ("harness_register_methods", self.methods, Method),
            ("harness_register_datasets", self.datasets, Dataset),
            ("harness_register_metrics", self.metrics, Metric),
            ("harness_register_executors", self.executors, Executor),
        ]
        raised: set[str] = set()  # plugins whose hook raised are not asked again; a refused name is no reason
        for hook_name, registry, base in kinds:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                owner = impl.plugin_name
                if owner in raised:
                    continue
                try:
                    impl.function(register=self._registrar(registry, base, owner))
                except Exception as exc:
                    raised.add(owner)
                    self._fail(owner, _short_error(exc, _file_of(impl.plugin)))
        for info in self.failures():
            self._withdraw(info)

    def _withdraw(self, info: PluginInfo) -> None:
        """Take back everything a failed plugin registered, and its hooks."""
        for registry in (self.tasks, self.methods, self.datasets, self.metrics, self.executors):
            registry.remove_owner(info.name)
        if info.provides:
            dropped = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in sorted(info.provides.items()))
            info.error = f"{info.error} (nothing of this plugin is used; dropped {dropped})"
            info.provides = {}
        plugin = self.pm.get_plugin(info.name)
        if plugin is not None:
            self.pm.unregister(plugin)

    def _fail(self, owner: str, error: str) -> None:
        """Mark ``owner`` failed; a plugin can fail more than once (one refused name per clash)."""
        info = self.info[owner]
        info.error = error if info.error is None else f"{info.error}; {error}"

    def _registrar(self, registry: Registry[Any], base: type | None, owner: str) -> Callable[[Any], None]:
        def register(entry: Any) -> None:
            if base is not None and not (isinstance(entry, type) and issubclass(entry, base)):
                raise TypeError(f"{owner}: register() expects a {base.__name__} subclass, got {entry!r}")
            if base is None and not isinstance(entry, Task):
                raise TypeError(f"{owner}: register() expects a Task, got {entry!r}")
            for key in (entry.name, *getattr(entry, "aliases", ())):
                if not isinstance(key, str) or not NAME_PATTERN.fullmatch(key):
                    raise UsageError(
                        f"{owner}: {registry.kind} name {key!r} is not allowed: names are lower-case letters, "
                        "digits, '.', '_' and '-', starting with a letter or digit"
                    )
            try:
                registry.add(entry.name, entry, owner, tuple(getattr(entry, "aliases", ())))
            except DuplicateName as exc:
                self._fail(owner, str(exc))  # the first owner keeps the name; this plugin's other entries count
                return
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


def _file_of(plugin: object) -> Path | None:
    """A module plugin's source file; a plugin object registered directly has none."""
    return Path(plugin.__file__) if isinstance(plugin, ModuleType) and plugin.__file__ else None


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

