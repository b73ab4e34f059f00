"""The layout rules of docs/architecture.md hold for the whole tree, and the checker can see a breach."""

from pathlib import Path

from import_rules import circles, forbidden, graph

ROOT = Path(__file__).resolve().parents[1]
TREE = {"harness": ROOT / "harness", "harness_plugins": ROOT / "plugins"}


def test_no_family_imports_a_sibling_and_the_core_imports_no_plugin():
    assert forbidden(graph(TREE)) == []


def test_no_import_circle():
    assert circles(graph(TREE)) == []


def test_methods_are_grouped_by_task():
    top = [p.name for p in (ROOT / "plugins" / "methods").iterdir() if p.name != "__pycache__"]
    assert len(top) <= 10, sorted(top)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_reports_sibling_imports_shared_breaches_and_circles(tmp_path):
    write(tmp_path / "core", {"__init__.py": "", "cli.py": "from .grid import commands\n",
                              "grid/__init__.py": "", "grid/commands.py": "def f():\n    from ..cli import x\n",
                              "api.py": "import harness_plugins.methods.m\n"})
    write(tmp_path / "plugins", {
        "__init__.py": "", "methods/__init__.py": "", "datasets/__init__.py": "", "shared/__init__.py": "",
        "methods/m.py": "from ..datasets.d import D\nfrom harness_plugins.shared import pose\nfrom harness import hookimpl\n",
        "datasets/d.py": "from harness_plugins.shared.pose import SKELETON\n",
        "shared/pose.py": "from harness_plugins.datasets import d\n",
    })
    edges = graph({"harness": tmp_path / "core", "harness_plugins": tmp_path / "plugins"})
    assert forbidden(edges) == [
        "harness.api -> harness_plugins.methods.m (the core imports a plugin)",
        "harness_plugins.methods.m -> harness_plugins.datasets.d (a family imports its sibling harness_plugins.datasets)",
        "harness_plugins.shared.pose -> harness_plugins.datasets.d (the shared layer imports a family)",
    ]
    assert circles(edges) == [
        ["harness.cli", "harness.grid.commands"],
        ["harness_plugins.datasets.d", "harness_plugins.shared.pose"],
    ]
