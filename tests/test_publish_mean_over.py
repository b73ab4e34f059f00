"""A leaderboard dataset with ``mean_over: trial``: one row per configuration whose cells are the mean
over the trials (each trial its own model), with the per-trial values kept; on synthetic records."""

from __future__ import annotations

import json

import pytest

from harness.publish import definitions
from harness.run.store import ResultStore

BOARD = """
name: trials
title: "Trials"
task: reidentification
papers: {p: "A paper"}
datasets:
  - {name: regdb, split: test, mean_over: trial}
conventions: {regdb: {match: {params.protocol: regdb}}}
metrics:
  - {metric: cmc, key: rank-1, higher_is_better: true, precision: 2, convention: regdb}
reported:
  - {method: "Paper two-stream", source: {paper: p, table: "Table 1", row: "x"}, values: {regdb: {rank-1: 18.0}},
     harness_method: two-stream, conventions: regdb}
"""


def record(number: int, method: str, trial: int, rank1: float, checkpoint: str, direction: str = "v2t") -> dict:
    """A minimal stored run of ``method`` on one RegDB trial (what `harness run` writes, reduced)."""
    return {
        "run_id": f"r{number:02d}", "created": f"2026-01-01T00:00:{number:02d}", "status": "ok", "task": "reidentification",
        "method": {"name": method, "version": "1", "options": {"height": 64}, "checkpoint_sha256": checkpoint},
        "dataset": {"name": "regdb", "version": "1", "split": "test", "options": {"trial": trial, "direction": direction}},
        "metrics": {"cmc": {"metric": "cmc", "label": "cmc", "values": {"rank-1": rank1}, "n": 4, "higher_is_better": True,
                            "version": "1", "params": {"protocol": "regdb"}, "convention": {}, "details": {}}},
    }


@pytest.fixture
def board_dir(tmp_path, isolated_env):
    store = ResultStore(isolated_env / "results")
    runs = [
        ("two-stream", 1, 10.0, "a1"), ("two-stream", 2, 99.0, "a2"), ("two-stream", 3, 30.0, "a3"),
        ("two-stream", 2, 20.0, "a2b"),  # trial 2 retrained later: the latest run of a trial counts
        ("hog", 1, 5.0, None), ("hog", 2, 7.0, None),
    ]
    for number, (method, trial, value, checkpoint) in enumerate(runs):
        store.write(record(number, method, trial, value, checkpoint))
    store.write(record(len(runs), "hog", 1, 3.0, None, direction="t2v"))  # another dataset option: another row
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "trials.yaml").write_text(BOARD)
    return boards


def test_cells_are_the_mean_over_trials_with_per_trial_values(cli, board_dir):
    code, out, err = cli("publish", "--leaderboards", board_dir, "--leaderboard", "trials", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)["leaderboards"][0]["tables"][0]["rows"]
    measured = {(row["method"], row["mean_over"]["runs"]["1"]["run_id"]): row for row in rows if row["kind"] == "measured"}
    assert len(measured) == 3
    two_stream = next(row for row in rows if row["method"].startswith("two-stream"))
    cell = two_stream["cells"]["rank-1[regdb]"]
    assert cell["parts"] == {"1": 10.0, "2": 20.0, "3": 30.0} and cell["over"] == "trial"
    assert cell["value"] == pytest.approx(20.0) and cell["best"] is True
    assert cell["delta"] == pytest.approx(2.0)  # against the paper's 18.0: the mean, not one trial
    assert cell["ci"]["low"] <= 20.0 <= cell["ci"]["high"]
    assert two_stream["mean_over"]["found"] == 3 and two_stream["method"] == "two-stream (mean over 3 × trial)"
    assert two_stream["mean_over"]["runs"]["2"]["checkpoint_sha256"] == "a2b"
    hog = [row for row in rows if row["method"].startswith("hog")]
    assert sorted(row["cells"]["rank-1[regdb]"]["value"] for row in hog) == [3.0, 6.0]
    paired = next(row for row in hog if row["mean_over"]["found"] == 2)["cells"]["rank-1[regdb]"]
    assert paired["parts"] == {"1": 5.0, "2": 7.0} and paired["p_value"] == pytest.approx(0.5)  # trial with trial

    code, out, err = cli("publish", "--leaderboards", board_dir, "--leaderboard", "trials", "--format", "markdown")
    assert code == 0, err
    assert "**20.00**" in out and "(mean of 3 × trial)" in out


def test_without_mean_over_every_trial_is_its_own_row(cli, board_dir):
    (board_dir / "trials.yaml").write_text(BOARD.replace(", mean_over: trial", ""))
    code, out, err = cli("publish", "--leaderboards", board_dir, "--leaderboard", "trials", "--format", "json")
    assert code == 0, err
    rows = [row for row in json.loads(out)["leaderboards"][0]["tables"][0]["rows"] if row["kind"] == "measured"]
    # two-stream: one row per checkpoint (a2 and a2b are two models); hog: one per (trial, direction)
    assert len(rows) == 4 + 3 and all("mean_over" not in row for row in rows)


def test_html_site_shows_the_trial_count(cli, board_dir, tmp_path):
    code, _, err = cli("publish", "--leaderboards", board_dir, "--leaderboard", "trials", "--out", tmp_path / "site")
    assert code == 0, err
    page = (tmp_path / "site" / "lb-trials.html").read_text()
    assert "mean of 3 × trial" in page and "trial 2: 20.00" in page


def test_mean_over_is_validated_and_used_for_regdb(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BOARD.replace("mean_over: trial", "mean_over: [trial]"))
    with pytest.raises(Exception, match=r"datasets\[0\]\.mean_over: expected a lower-case name"):
        definitions.load(bad)
    hi_cmd = next(board for board in definitions.load_all() if board.name == "hi-cmd")
    assert hi_cmd.dataset("regdb").mean_over == "trial" and hi_cmd.dataset("sysu-mm01").mean_over is None
