"""Plugin discovery: built-ins as entry points, --plugins-dir files, failures, duplicates, suggestions."""

from __future__ import annotations

import json
import textwrap

import pytest

import harness
from harness.errors import UsageError
from harness.plugins import Plugins, get_plugins

from cli_helpers import FIXTURE_PLUGINS


def test_builtins_register_through_entry_points():
    plugins = Plugins()
    builtin = plugins.info["identity"]
    assert builtin.ok and "entry point harness_plugins.methods.identity" in builtin.source
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
    code, out, _ = cli("plugins", "--json", "--plugins-dir", tmp_path, "--plugins-dir", FIXTURE_PLUGINS)
    assert code == 0
    info = {entry["name"]: entry for entry in json.loads(out)}
    assert not info["broken"]["ok"] and "not_a_real_module_xyz" in info["broken"]["error"]
    assert not info["raising"]["ok"] and "boom in register" in info["raising"]["error"]
    assert info["demo_plugin"]["ok"] and info["identity"]["ok"]

    code, out, err = cli("list", "methods", "--plugins-dir", tmp_path)
    assert code == 0 and "identity" in out
    assert "plugin broken failed to load" in err

    code, out, _ = cli("plugins", "--plugins-dir", tmp_path)
    assert "broken [FAILED]" in out and "error: ModuleNotFoundError" in out


def test_duplicate_name_names_both_owners(tmp_path):
    (tmp_path / "copycat.py").write_text(textwrap.dedent("""
        from harness import Method, hookimpl
        class Copy(Method):
            name = "identity"
            tasks = frozenset({"deraining"})
        @hookimpl
        def harness_register_methods(register):
            register(Copy)
    """))
    with pytest.raises(UsageError, match=r"duplicate method name 'identity'.*'identity'.*'copycat'"):
        Plugins([tmp_path])


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
