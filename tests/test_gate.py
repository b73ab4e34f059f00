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


def run_sdsen(cli, checkpoint: Path, results: Path, *extra: str) -> None:
    code, _, err = cli("run", "--method", "s-dsen", "--option", "stages=2", "--dataset", "rain-synth",
                       "--checkpoint", checkpoint, "--results", results, "--quiet", *extra)
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
    # 12 samples are enough for the test at 0.05 (min p = 2/2^12): even the strictest policy passes.
    code, out, err = cli("gate", "--results", same, "--baseline", baseline_file, "--min-samples-policy", "fail")
    assert code == 0 and "too few" not in out, out + err

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


def test_four_samples_all_worse_is_a_regression_judged_by_tolerance(cli, checkpoints, tmp_path, monkeypatch):
    """Issue 23: on 4 paired samples the sign-flip test cannot go below p = 2/2^4 = 0.125, so "not
    significant" said nothing and the gate always passed; now the tolerance decides, and the row says why."""
    monkeypatch.setenv("HARNESS_DATA", str(checkpoints["data"]))
    base, worse = tmp_path / "base", tmp_path / "worse"
    run_sdsen(cli, checkpoints["home"] / "longer", base, "--limit", "4")
    run_sdsen(cli, checkpoints["home"] / "brief", worse, "--limit", "4")
    baseline_file, worse_file = tmp_path / "baseline.json", tmp_path / "worse.json"
    code, _, err = cli("gate", "--results", base, "--export", baseline_file)
    assert code == 0
    assert "harness: warning: s-dsen (" in err
    assert "× rain-synth/test: psnr/psnr, ssim/ssim: too few paired samples (4)" in err
    assert "needs at least 6" in err
    assert cli("gate", "--results", worse, "--export", worse_file)[0] == 0
    before = json.loads(baseline_file.read_text())["cells"][0]["values"]
    after = json.loads(worse_file.read_text())["cells"][0]["values"]
    for name, tolerance in (("psnr/psnr", 0.05), ("ssim/ssim", 0.002)):  # the shipped leaderboards' tolerances
        drops = [before[name]["per_sample"][key] - after[name]["per_sample"][key] for key in before[name]["per_sample"]]
        assert len(drops) == 4 and min(drops) > tolerance, (name, drops)  # every image worse, beyond tolerance

    code, out, err = cli("gate", "--results", worse, "--baseline", baseline_file)
    assert code == 1, out + err
    rows = [line for line in out.splitlines() if line.startswith("| **regressed**")]
    assert len(rows) == 2 and "psnr" in rows[0] and "ssim" in rows[1]
    for row in rows:
        assert "too few paired samples (4) for the test at α = 0.05 (min p = 0.125): judged by tolerance" in row

    code, out, _ = cli("gate", "--results", worse, "--baseline", baseline_file, "--min-samples-policy", "pass")
    assert code == 0 and out.count("not judged (--min-samples-policy pass)") == 2
    code, out, _ = cli("gate", "--results", base, "--baseline", baseline_file, "--min-samples-policy", "fail")
    assert code == 1 and out.count("| **underpowered** |") == 2  # identical, yet the suite is too small to gate
    code, out, _ = cli("gate", "--results", worse, "--baseline", baseline_file, "--alpha", "0.2")
    assert code == 1 and "paired sign-flip test on 4 samples" in out  # at α = 0.2 min p = 0.125 suffices
    with pytest.raises(SystemExit) as exit_:  # argparse's own exit 2 for a choice it does not know
        cli("gate", "--results", worse, "--baseline", baseline_file, "--min-samples-policy", "never")
    assert exit_.value.code == 2
    code, _, err = cli("gate", "--results", worse, "--baseline", baseline_file, "--alpha", "0")
    assert code == 2 and "--alpha" in err


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


@pytest.mark.parametrize("where, change, message", [
    (("values", "psnr/psnr", "value"), "abc", 'cells[0].values["psnr/psnr"].value: expected a finite number, got "abc"'),
    (("values", "psnr/psnr", "value"), float("nan"), 'cells[0].values["psnr/psnr"].value: expected a finite number, got NaN'),
    (("values", "ssim/ssim", "value"), float("inf"), 'cells[0].values["ssim/ssim"].value: expected a finite number, got Infinity'),
    (("values", "psnr/psnr", "per_sample", "1"), "x", 'cells[0].values["psnr/psnr"].per_sample["1"]: expected a finite number'),
    (("values", "psnr/psnr", "higher_is_better"), "yes", '.higher_is_better: expected true or false, got "yes"'),
    (("values", "psnr/psnr", "history"), 3, ".history: expected a list of finite numbers, got 3"),
    (("method",), None, "cells[0].method: missing (expected a string)"),
    (("values", "ssim/ssim", "label"), None, 'cells[0].values["ssim/ssim"].label: missing (expected a string)'),
    (("surprise",), 1, "cells[0].surprise: unexpected field"),
])
def test_malformed_baseline_names_the_json_path_and_exits_2(cli, tmp_path, where, change, message):
    """Issue 21 item 4: a wrong type, NaN or inf in a baseline was a TypeError (exit 1, read by CI as a
    regression); now it is a malformed baseline (exit 2) whose message gives the JSON path."""
    results = tmp_path / "results"
    assert cli("run", "--method", "identity", "--dataset", "rain-synth", "--results", results, "--quiet",
               "--limit", "3")[0] == 0
    baseline = tmp_path / "baseline.json"
    assert cli("gate", "--results", results, "--export", baseline)[0] == 0
    data = json.loads(baseline.read_text())
    assert data["cells"][0]["values"]["psnr/psnr"]["per_sample"].keys() >= {"1"}
    target = data["cells"][0]
    for key in where[:-1]:
        target = target[key]
    if change is None:
        del target[where[-1]]
    else:
        target[where[-1]] = change
    baseline.write_text(json.dumps(data))
    code, out, err = cli("gate", "--results", results, "--baseline", baseline)
    assert code == 2 and out == "", err
    assert f"--baseline {baseline}: malformed baseline at " in err and message in err
    assert "Traceback" not in err and "__init__" not in err


def test_export_merge_keeps_the_worse_value_of_each_machine(cli, tmp_path):
    """A baseline built on two kinds of CPU holds on both: each value is the worse of the two, with its
    own per-sample values; cells the current results no longer hold are not carried over."""
    results = tmp_path / "results"
    assert cli("run", "--method", "identity", "--dataset", "rain-synth", "--results", results, "--quiet")[0] == 0
    ours = tmp_path / "ours.json"
    assert cli("gate", "--results", results, "--export", ours)[0] == 0
    data = json.loads(ours.read_text())
    cell = data["cells"][0]
    psnr, ssim = cell["values"]["psnr/psnr"], cell["values"]["ssim/ssim"]
    psnr["per_sample"] = {key: number - 1.0 for key, number in psnr["per_sample"].items()}  # worse there
    psnr["value"] -= 1.0
    ssim["per_sample"] = {key: number + 0.1 for key, number in ssim["per_sample"].items()}  # better there
    ssim["value"] += 0.1
    stale = json.loads(json.dumps(cell))
    stale["method"] = "renamed-since"
    data["cells"].append(stale)
    theirs = tmp_path / "theirs.json"
    theirs.write_text(json.dumps(data))

    merged = tmp_path / "merged.json"
    code, out, err = cli("gate", "--results", results, "--export", merged, "--merge", theirs)
    assert code == 0, err
    assert "each value the worse of it and 1 merged baseline(s)" in out
    written = json.loads(merged.read_text())["cells"]
    mine = json.loads(ours.read_text())["cells"][0]["values"]
    assert [c["method"] for c in written] == ["identity"]
    assert written[0]["values"]["psnr/psnr"]["value"] == pytest.approx(mine["psnr/psnr"]["value"] - 1.0)
    assert written[0]["values"]["psnr/psnr"]["per_sample"] == psnr["per_sample"]
    assert written[0]["values"]["ssim/ssim"] == mine["ssim/ssim"]

    # Against the merged baseline this machine's results pass (psnr better than the other machine's).
    code, out, _ = cli("gate", "--results", results, "--baseline", merged, "--require-all")
    assert code == 0 and "| improved | identity" in out
    code, out, _ = cli("gate", "--results", results, "--baseline", theirs)
    regressed = [line for line in out.splitlines() if line.startswith("| **regressed** | identity")]
    assert code == 1 and len(regressed) == 1 and "| ssim |" in regressed[0]  # unmerged, the other side fails
    # A value measured under another protocol (metric parameters or convention) is not merged.
    other_protocol = json.loads(theirs.read_text())
    other_protocol["cells"][0]["values"]["psnr/psnr"]["protocol"] = "another convention"
    theirs.write_text(json.dumps(other_protocol))
    assert cli("gate", "--results", results, "--export", merged, "--merge", theirs)[0] == 0
    assert json.loads(merged.read_text())["cells"][0]["values"]["psnr/psnr"] == mine["psnr/psnr"]
    code, _, err = cli("gate", "--results", results, "--baseline", ours, "--merge", theirs)
    assert code == 2 and "--merge" in err and "--export" in err
