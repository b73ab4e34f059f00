"""The leaderboards' "≈ best" marker through `harness publish`: with five or fewer samples shared with the
best row the paired test can never reach p < 0.05, so the row says "too few samples to tell" instead of
"tied"; with 12 samples the test decides. On synthetic records with per-query values."""

from __future__ import annotations

import json

import pytest

from harness.run.store import ResultStore

BOARD = """
name: markers
title: "Markers"
task: reidentification
papers: {p: "A paper"}
datasets:
  - {name: regdb, split: test}
metrics:
  - {metric: map, key: mAP, higher_is_better: true, precision: 2}
"""


def record(number: int, method: str, per_query: list[float]) -> dict:
    """A stored run whose metric keeps one value per query (as the re-id metrics do)."""
    values = {f"q{i}": value for i, value in enumerate(per_query)}
    return {
        "run_id": f"r{number:02d}", "created": f"2026-01-01T00:00:{number:02d}", "status": "ok", "task": "reidentification",
        "method": {"name": method, "version": "1", "options": {}, "checkpoint_sha256": None},
        "dataset": {"name": "regdb", "version": "1", "split": "test", "options": {}},
        "metrics": {"map": {"metric": "map", "label": "map", "values": {"mAP": sum(per_query) / len(per_query)},
                            "n": len(per_query), "higher_is_better": True, "version": "1", "params": {},
                            "convention": {}, "details": {"per_sample": {"mAP": values}}}},
    }


def publish(cli, isolated_env, tmp_path, runs: dict[str, list[float]]) -> tuple[dict[str, dict], str, str]:
    store = ResultStore(isolated_env / "results")
    for number, (method, per_query) in enumerate(runs.items()):
        store.write(record(number, method, per_query))
    boards = tmp_path / "boards"
    boards.mkdir(exist_ok=True)
    (boards / "markers.yaml").write_text(BOARD)
    code, out, err = cli("publish", "--leaderboards", boards, "--leaderboard", "markers", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)["leaderboards"][0]["tables"][0]["rows"]
    cells = {row["method"]: row["cells"]["mAP"] for row in rows}
    code, markdown, err = cli("publish", "--leaderboards", boards, "--leaderboard", "markers", "--format", "markdown")
    assert code == 0, err
    code, _, err = cli("publish", "--leaderboards", boards, "--leaderboard", "markers", "--out", tmp_path / "site")
    assert code == 0, err
    return cells, markdown, (tmp_path / "site" / "lb-markers.html").read_text()


@pytest.mark.parametrize("n", [4, 5])
def test_too_few_shared_samples_is_not_a_tie(cli, isolated_env, tmp_path, n):
    best = [50.0 + i for i in range(n)]
    other = [value - 0.5 for value in best]  # worse on every query, but n pairs cannot reach p < 0.05
    cells, markdown, page = publish(cli, isolated_env, tmp_path, {"best": best, "other": other})
    assert cells["best"]["best"] and cells["other"]["too_few"] == n
    assert cells["other"]["tied"] is False and cells["other"]["p_value"] == pytest.approx(2 / 2**n)
    line = next(line for line in markdown.splitlines() if line.startswith("| other"))
    assert "(too few samples to tell)" in line and "≈" not in line
    assert "too few samples to tell</span>" in page.split("<tbody>")[1]
    assert 'class="badge tied"' not in page.split("<tbody>")[1]


def test_twelve_shared_samples_let_the_test_decide(cli, isolated_env, tmp_path):
    best = [50.0 + i for i in range(12)]
    noise = [0.3, -0.2, 0.1, -0.4, 0.2, -0.1, 0.25, -0.3, 0.15, -0.05, 0.1, 0.2]
    worse = [value - 0.5 for value in best]
    cells, markdown, page = publish(cli, isolated_env, tmp_path,
                                    {"best": best, "noisy": [b - d for b, d in zip(best, noise)], "worse": worse})
    assert cells["noisy"]["too_few"] is None and cells["noisy"]["tied"] is True and cells["noisy"]["p_value"] > 0.05
    assert cells["worse"]["too_few"] is None and cells["worse"]["tied"] is False
    assert cells["worse"]["p_value"] == pytest.approx(2 / 2**12)
    assert "too few samples to tell" not in markdown.split("Measured values:")[0]
    assert 'class="badge tied"' in page.split("<tbody>")[1] and "too few samples to tell</span>" not in page.split("<tbody>")[1]
