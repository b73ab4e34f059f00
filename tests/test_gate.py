"""`harness gate` through the CLI: identical results pass, a briefly trained S-DSEN against a longer
trained one is a significant regression named in the summary, and one-sample noise within the
tolerance is not a regression."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

TRAIN = ("--method", "s-dsen", "--dataset", "rain-synth", "--batch-size", "4", "--option", "stages=2",
         "--option", "patch=32", "--quiet")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """S-DSEN (2 stages) trained for 1 step and for 12 steps on rain-synth (in-process CLI)."""
    home = tmp_path_factory.mktemp("gate")
    for name, steps in (("brief", 1), ("longer", 12)):
        code = main(["train", *TRAIN, "--steps", str(steps), "--out", str(home / name),
                     "--data-root", str(home / "data" / "rain-synth")])
        assert code == 0
    return {"home": home, "data": home / "data"}


def run_sdsen(cli, checkpoint: Path, results: Path) -> None:
    code, _, err = cli("run", "--method", "s-dsen", "--option", "stages=2", "--dataset", "rain-synth",
                       "--checkpoint", checkpoint, "--results", results, "--quiet")
    assert code == 0, err


def test_gate_passes_identical_and_catches_a_briefly_trained_checkpoint(cli, checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(checkpoints["data"]))
    base, same, worse = tmp_path / "base", tmp_path / "same", tmp_path / "worse"
    run_sdsen(cli, checkpoints["home"] / "longer", base)
    run_sdsen(cli, checkpoints["home"] / "longer", same)
    run_sdsen(cli, checkpoints["home"] / "brief", worse)
    baseline_file = tmp_path / "baseline.json"
    code, out, err = cli("gate", "--results", base, "--export", baseline_file)
    assert code == 0, err
    exported = json.loads(baseline_file.read_text())
    assert exported["format"] == "harness-baseline/1" and len(exported["cells"]) == 1

    for baseline in (base, baseline_file):  # a results directory or the committed JSON
        code, out, err = cli("gate", "--results", same, "--baseline", baseline)
        assert code == 0, err
        assert "no regression" in out and "regressed" not in out.split("\n", 3)[-1].split("| Status")[0]

    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, err = cli("gate", "--results", worse, "--baseline", baseline_file)
    assert code == 1, err
    regression = [line for line in out.splitlines() if line.startswith("| **regressed**")]
    assert regression and "s-dsen" in regression[0] and "rain-synth" in regression[0] and "psnr" in regression[0]
    assert "paired sign-flip test on 12 samples" in regression[0]
    assert float(regression[0].split("|")[8]) < 0.05  # the p-value is printed
    assert summary.read_text() == out

    # The other way round it is an improvement, not a failure.
    code, out, _ = cli("gate", "--results", base, "--baseline", worse)
    assert code == 0 and "| improved |" in out


def test_one_sample_noise_within_tolerance_is_not_a_regression(cli, tmp_path):
    results = tmp_path / "results"
    code, _, err = cli("run", "--method", "identity", "--dataset", "rain-synth", "--results", results, "--quiet")
    assert code == 0, err
    baseline = tmp_path / "baseline.json"
    assert cli("gate", "--results", results, "--export", baseline)[0] == 0
    data = json.loads(baseline.read_text())
    psnr = data["cells"][0]["values"]["psnr/psnr"]
    first = sorted(psnr["per_sample"])[0]
    psnr["per_sample"][first] += 0.3  # one image a little better in the baseline: mean 0.025 dB higher
    psnr["value"] += 0.3 / len(psnr["per_sample"])
    baseline.write_text(json.dumps(data))
    code, out, err = cli("gate", "--results", results, "--baseline", baseline)
    assert code == 0, err
    assert "within tolerance" in out
    # With a zero tolerance the drop exceeds it, but one image is no evidence: still not a regression.
    code, out, err = cli("gate", "--results", results, "--baseline", baseline, "--tolerance", "psnr=0")
    assert code == 0, err
    assert "not significant on 12 paired samples" in out
    # Without per-sample values the tolerance alone decides, and the summary says so.
    del psnr["per_sample"]
    psnr["per_sample"] = None
    baseline.write_text(json.dumps(data))
    code, out, _ = cli("gate", "--results", results, "--baseline", baseline, "--tolerance", "psnr=0")
    assert code == 1 and "judged by tolerance alone" in out


def test_gate_statuses_and_usage_errors(cli, tmp_path):
    results = tmp_path / "results"
    assert cli("run", "--method", "identity", "--dataset", "rain-synth", "--results", results, "--quiet",
               "--limit", "3")[0] == 0
    baseline = tmp_path / "baseline.json"
    assert cli("gate", "--results", results, "--export", baseline)[0] == 0
    data = json.loads(baseline.read_text())
    cell = data["cells"][0]
    cell["values"]["ssim/ssim"]["protocol"] = "something else"
    cell["values"]["psnr/psnr"]["version"] = "0"
    missing = json.loads(json.dumps(cell))
    missing["method"] = "gone"
    data["cells"].append(missing)
    baseline.write_text(json.dumps(data))
    code, out, _ = cli("gate", "--results", results, "--baseline", baseline)
    assert code == 0
    assert "protocol changed" in out and "metric version changed (0 → 1)" in out and "| missing | gone" in out
    code, out, _ = cli("gate", "--results", results, "--baseline", baseline, "--require-all")
    assert code == 1 and "| **dropped** | gone" in out and "❌ regression" in out

    assert cli("gate", "--results", results)[0] == 2
    code, _, err = cli("gate", "--results", results, "--baseline", tmp_path / "nowhere.json")
    assert code == 2 and "nowhere.json" in err
    (tmp_path / "bad.json").write_text("{}")
    code, _, err = cli("gate", "--results", results, "--baseline", tmp_path / "bad.json")
    assert code == 2 and "harness-baseline/1" in err
    code, _, err = cli("gate", "--results", results, "--baseline", baseline, "--tolerance", "psnr")
    assert code == 2 and "--tolerance" in err


def test_latency_is_reported_unless_gated_then_judged_by_the_median():
    from harness.publish import gate

    def cell(history):
        value = gate.Value("latency", "latency", "latency-ms", history[-1], False, "p", "1", None, history)
        return {"c": gate.CellResult("m", {}, "d", "test", "ok", "r", "x", {"latency/latency-ms": value})}

    base, noisy, slower = cell([10.0, 10.5, 9.8]), cell([10.2, 30.0, 10.1]), cell([14.0, 13.5, 15.0])
    policy = gate.Policy({}, {"latency"})
    [finding] = gate.compare(base, slower, policy)
    assert finding.status == "reported" and gate.exit_code([finding]) == 0
    policy.gate_timings = True
    [finding] = gate.compare(base, noisy, policy)  # one slow outlier: the median barely moves
    assert finding.status == "pass" and finding.current == 10.2
    [finding] = gate.compare(base, slower, policy)
    assert finding.status == "regressed" and "median of 3 run(s)" in finding.note
