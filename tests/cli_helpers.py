"""Paths shared by the tests (importable because pytest puts tests/ on sys.path)."""

from pathlib import Path

FIXTURE_PLUGINS = Path(__file__).parent / "plugin_fixtures"
