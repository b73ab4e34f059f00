"""The plugin example in docs/writing-plugins.md works as documented."""

from __future__ import annotations

import re
from pathlib import Path

from cli_helpers import FIXTURE_PLUGINS

DOC = Path(__file__).resolve().parent.parent / "docs" / "writing-plugins.md"


def test_documented_plugin_runs(cli, tmp_path):
    code = re.search(r"```python\n(# my_plugins/median_filter.py.*?)```", DOC.read_text(), re.S).group(1)
    folder = tmp_path / "my_plugins"
    folder.mkdir()
    (folder / "median_filter.py").write_text(code)
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    status, out, err = cli("--plugins-dir", folder, "--plugins-dir", FIXTURE_PLUGINS, "run",
                           "--method", "median-filter", "--dataset", "demo-pairs", "--data-root", root,
                           "--option", "k=5", "--quiet")
    assert status == 0, err
    assert "median-filter × demo-pairs" in out
