"""Plugin discovery: built-ins as entry points, --plugins-dir files, failures, duplicates, suggestions."""

from __future__ import annotations

import json
import textwrap

import pytest
from cli_helpers import FIXTURE_PLUGINS

import harness
from harness.errors import UsageError
from harness.plugins import Plugins, get_plugins


def test_builtins_register_through_entry_points():
    plugins = Plugins()
    builtin = plugins.info["identity"]
    assert builtin.ok and "entry point harness_plugins.methods.generic.identity" in builtin.source
    assert "identity" in plugins.methods
    assert set(plugins.tasks.names()) >= {"deraining", "inpainting", "reidentification", "pose-transfer",
                                          "unpaired-translation", "descriptor-inversion"}


def test_plugins_dir_adds_unpackaged_plugin(tmp_path):
    plugins = Plugins([FIXTURE_PLUGINS])
    assert plugins.info["demo_plugin"].ok
    assert "file" in plugins.info["demo_plugin"].source
    assert "demo-pairs" in plugins.datasets and "flaky" in plugins.methods


def test_env_var_plugins_dir(monkeypatch):
    monkeypatch.setenv("HARNESS_PLUGINS_DIR", str(FIXTURE_PLUGINS))
    assert "demo-mae" in get_plugins().metrics


def test_broken_plugin_is_reported_and_others_still_load(tmp_path, cli):
    (tmp_path / "broken.py").write_text("import not_a_real_module_xyz\n")
    (tmp_path / "raising.py").write_text(textwrap.dedent("""
        from harness import hookimpl
        @hookimpl
        def harness_register_metrics(register):
            raise RuntimeError("boom in register")
    """))
    (tmp_path / "typo.py").write_text("x = 1\ndef broken(:\n")
    code, out, _ = cli("plugins", "--json", "--plugins-dir", tmp_path, "--plugins-dir", FIXTURE_PLUGINS)
    assert code == 1
    info = {entry["name"]: entry for entry in json.loads(out)}
    assert not info["broken"]["ok"] and "not_a_real_module_xyz" in info["broken"]["error"]
    assert not info["raising"]["ok"] and "boom in register" in info["raising"]["error"]
    assert info["demo_plugin"]["ok"] and info["identity"]["ok"]
    # the plugin's own file and line, never the import machinery's frozen frames
    assert f"({tmp_path / 'broken.py'}:1)" in info["broken"]["error"]
    assert f"({tmp_path / 'raising.py'}:5)" in info["raising"]["error"]
    assert info["typo"]["error"].startswith("SyntaxError") and f"({tmp_path / 'typo.py'}:2)" in info["typo"]["error"]
    assert not any("frozen" in entry["error"] for entry in info.values() if entry["error"])

    code, out, err = cli("list", "methods", "--plugins-dir", tmp_path)
    assert code == 0 and "identity" in out
    assert "plugin broken failed: ModuleNotFoundError" in err

    code, out, _ = cli("plugins", "--plugins-dir", tmp_path)
    assert code == 1 and "broken [FAILED]" in out and "error: ModuleNotFoundError" in out
    code, out, _ = cli("plugins")
    assert code == 0 and "[FAILED]" not in out


def test_entry_point_import_error_names_the_module_file(tmp_path, monkeypatch):
    """An installed plugin failing at import shows its own file and line too (its module found without importing)."""
    package = tmp_path / "site" / "thirdparty_harness_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "metrics.py").write_text("import math\nfrom not_installed_either import thing\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    from harness.plugins import _module_file, _short_error

    try:
        __import__("thirdparty_harness_plugin.metrics")
    except ImportError as exc:
        error = _short_error(exc, _module_file("thirdparty_harness_plugin.metrics"))
    assert error == f"ModuleNotFoundError: No module named 'not_installed_either' ({package / 'metrics.py'}:2)"


def test_duplicate_name_is_refused_and_everything_else_works(tmp_path, cli):
    """A plugin re-registering a built-in's name (or an earlier plugin's) no longer breaks every command:
    the first owner keeps the name, the later registration is reported failed naming both owners, and the
    failed plugin contributes nothing (issue 21: FAILED in `harness plugins` yet credited by a run was
    a contradiction)."""
    (tmp_path / "copycat.py").write_text(textwrap.dedent("""
        from harness import Method, Metric, hookimpl
        class Copy(Method):
            name = "identity"
            tasks = frozenset({"deraining"})
        class Own(Method):
            name = "copycat-own"
            tasks = frozenset({"deraining"})
        class Psnr(Metric):
            name = "psnr"
        @hookimpl
        def harness_register_methods(register):
            register(Copy)
            register(Own)
        @hookimpl
        def harness_register_metrics(register):
            register(Psnr)
    """))
    (tmp_path / "zz_later.py").write_text(textwrap.dedent("""
        from harness import Method, hookimpl
        class Again(Method):
            name = "other"
            aliases = ("copycat-own",)
            tasks = frozenset({"deraining"})
        @hookimpl
        def harness_register_methods(register):
            register(Again)
    """))
    code, out, err = cli("list", "--plugins-dir", tmp_path)
    assert code == 0 and "copycat-own" not in out and "psnr" in out
    assert "plugin copycat failed: duplicate method name 'identity'" in err

    code, out, _ = cli("info", "identity", "--plugins-dir", tmp_path)
    assert code == 0 and "from plugin identity)" in out
    code, out, _ = cli("info", "psnr", "--plugins-dir", tmp_path)
    assert code == 0 and "from plugin psnr-ssim)" in out

    code, out, _ = cli("plugins", "--plugins-dir", tmp_path)
    assert code == 1
    assert ("error: duplicate method name 'identity': registered by plugin 'identity' and again by plugin "
            "'copycat'; duplicate metric name 'psnr': registered by plugin 'psnr-ssim' and again by plugin "
            "'copycat'") in out
    assert "copycat [FAILED]" in out and "    methods: copycat-own" not in out
    assert "(nothing of this plugin is used; dropped methods: copycat-own)" in out
    assert ("duplicate method name 'copycat-own': registered by plugin 'copycat' and again by plugin "
            "'zz_later'") in out
    plugins = Plugins([tmp_path])
    assert "copycat-own" not in plugins.methods and "other" not in plugins.methods


def test_unknown_name_suggests_close_matches(cli):
    with pytest.raises(UsageError, match="did you mean identity"):
        harness.create_method("identty")
    code, _, err = cli("run", "--method", "idnetity", "--dataset", "demo-pairs", "--plugins-dir", FIXTURE_PLUGINS)
    assert code == 2 and "did you mean identity" in err


def test_register_rejects_non_plugin_classes(tmp_path):
    (tmp_path / "wrong.py").write_text(textwrap.dedent("""
        from harness import hookimpl
        @hookimpl
        def harness_register_methods(register):
            register(object)
    """))
    plugins = Plugins([tmp_path])
    assert "expects a Method subclass" in plugins.info["wrong"].error


def test_unknown_option_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown option"):
        get_plugins([FIXTURE_PLUGINS]).methods.get("flaky")(nope=1)
    with pytest.raises(UsageError, match="expects int"):
        get_plugins([FIXTURE_PLUGINS]).methods.get("flaky")(crash_after="many")


def test_method_view_passes_optional_inputs_only_when_present() -> None:
    from harness.api import Task

    task = Task(name="t", description="", inputs=("a",), optional_inputs=("extra",), output="image",
                fields={"a": "", "y": ""}, target="y")
    assert task.method_view({"id": "1", "a": 1, "y": 2}) == {"id": "1", "a": 1}
    assert task.method_view({"id": "1", "a": 1, "y": 2, "extra": 3}) == {"id": "1", "a": 1, "extra": 3}
