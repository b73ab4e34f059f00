"""Leaderboards, `harness publish` and `harness leaderboards` through the CLI, on a store holding
deraining and re-id runs; the statistics against scipy and hand-computed cases."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from fixtures_rain import make_rain100h
from test_market1501 import make_market1501
from test_precomputed_features import layumi_result

from harness.publish import stats
from harness.publish.site import safe_name

FIXTURES = Path(__file__).parent / "publish_fixtures"


# -- statistics ------------------------------------------------------------------------------------
def test_bootstrap_interval_matches_scipy_percentile_bootstrap():
    values = np.random.default_rng(3).normal(25.0, 2.0, size=60)
    ours = stats.bootstrap_ci(values, resamples=4000, seed=1)
    theirs = scipy.stats.bootstrap((values,), np.mean, n_resamples=4000, method="percentile",
                                   confidence_level=0.95, random_state=1).confidence_interval
    assert ours.low == pytest.approx(theirs.low, abs=0.08) and ours.high == pytest.approx(theirs.high, abs=0.08)
    assert ours.low < values.mean() < ours.high and ours.n == 60 and ours.seed == 1
    assert stats.bootstrap_ci(values, seed=5) == stats.bootstrap_ci(values, seed=5)  # seeded, reproducible
    constant = stats.bootstrap_ci([0.5, 0.5, 0.5])
    assert (constant.low, constant.high) == (0.5, 0.5)
    assert stats.bootstrap_ci([1.0]) is None


def test_sign_flip_test_exact_by_hand_and_against_scipy():
    # Five positive differences: only the all-plus and all-minus assignments are as extreme: p = 2/32.
    assert stats.sign_flip_test([1.0, 2.0, 0.5, 3.0, 1.5]).p_value == pytest.approx(2 / 32)
    assert stats.sign_flip_test([0.0, 0.0, 0.0]).p_value == 1.0
    d = np.array([0.3, -0.1, 0.4, 0.25, -0.05, 0.6, 0.1, -0.2, 0.35, 0.15])
    ours = stats.sign_flip_test(d)
    theirs = scipy.stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                          alternative="two-sided")
    assert ours.exact and ours.p_value == pytest.approx(theirs.pvalue)
    large = np.random.default_rng(0).normal(0.1, 1.0, size=200)
    mc = stats.sign_flip_test(large, permutations=20000, seed=2)
    ref = scipy.stats.permutation_test((large,), np.mean, permutation_type="samples", n_resamples=20000,
                                       alternative="two-sided", random_state=2)
    assert not mc.exact and mc.p_value == pytest.approx(ref.pvalue, abs=0.02)
    assert stats.paired_differences({"a": 2.0, "b": 1.0, "c": None}, {"a": 1.5, "b": 1.0, "d": 3.0}) == [0.5, 0.0]


def test_smallest_attainable_sign_flip_p_value():
    """The gate and the leaderboards ask whether the test can reach alpha at all: its smallest p-value is
    that of differences all of one sign, 2/2^n exactly (scipy agrees), 1/(permutations+1) by Monte Carlo."""
    rng = np.random.default_rng(4)
    for n in range(1, 11):
        same_sign = rng.uniform(0.1, 2.0, size=n)
        assert stats.sign_flip_min_p(n) == pytest.approx(stats.sign_flip_test(same_sign).p_value) == pytest.approx(2 / 2**n)
        if n >= 2:  # scipy wants two observations
            scipy_p = scipy.stats.permutation_test((same_sign,), np.mean, permutation_type="samples",
                                                   n_resamples=np.inf, alternative="two-sided").pvalue
            assert stats.sign_flip_min_p(n) == pytest.approx(scipy_p)
        assert all(stats.sign_flip_test(rng.normal(size=n)).p_value >= stats.sign_flip_min_p(n) for _ in range(5))
    assert stats.sign_flip_min_p(5) == 0.0625 and stats.sign_flip_min_p(6) == 0.03125  # either side of 0.05
    assert stats.sign_flip_min_p(40) == pytest.approx(1 / 10001) == stats.sign_flip_test(np.ones(40)).p_value
    assert stats.sign_flip_min_samples(0.05) == 6 and stats.sign_flip_min_samples(0.01) == 8
    assert stats.sign_flip_min_samples(1e-5) is None  # below what 10,000 random flips can resolve
    with pytest.raises(ValueError):
        stats.sign_flip_min_p(0)


# -- definitions -----------------------------------------------------------------------------------
def test_leaderboards_list_and_check(cli):
    code, out, err = cli("leaderboards")
    assert code == 0, err
    for name in ("s-dsen", "hi-cmd", "yang-inpainting", "yang-translation", "spt-person-generation", "spt-parsing"):
        assert name in out
    code, out, err = cli("leaderboards", "check")
    assert code == 0, err
    assert "leaderboard definition(s) valid" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: Bad Name\ntitle: t\ntask: x\ndatasets: [{name: d}]\nmetrics: [{metric: m, key: k, higher_is_better: true}]\n",
         "name: expected a lower-case name"),
        ("name: b\ntitle: t\ntask: x\ndatasets: [{name: d}]\nmetrics: [{metric: m, key: k, higher_is_better: yes please}]\n",
         "metrics[0].higher_is_better: expected true or false"),
        ("name: b\ntitle: t\ntask: x\ndatasets: [{name: d}]\nmetrics: [{metric: m, key: k, higher_is_better: true}]\n"
         "papers: {p: P}\nreported: [{method: M, source: {paper: p, table: T, row: R}, values: {other: {k: 1}}}]\n",
         "reported[0].values.other: expected a dataset of this leaderboard"),
        ("name: b\ntitle: t\ntask: x\ndatasets: [{name: d}]\nmetrics: [{metric: m, key: k, higher_is_better: true}]\n"
         "papers: {p: P}\nreported: [{method: M, source: {paper: p, table: T, row: R}, values: {d: {k: high}}}]\n",
         "reported[0].values.d.k: expected a number"),
        ("name: b\ntitle: t\ntask: x\ndatasets: [{name: d}]\nmetrics: [{metric: m, key: k, higher_is_better: true, colour: red}]\n",
         "metrics[0]: unknown field(s) colour"),
        ("name: b\ntitle: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_definitions_name_the_file_and_field(cli, tmp_path, text, expected):
    (tmp_path / "bad.yaml").write_text(text)
    code, _, err = cli("leaderboards", "check", "--leaderboards", tmp_path)
    assert code == 2
    assert str(tmp_path / "bad.yaml") in err and expected in err


# -- publishing --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A result store with deraining runs (rain100h, rain-synth) and a Market-1501 re-id run, built once."""
    from harness.cli import main
    from harness.plugins import reset_plugins

    home = tmp_path_factory.mktemp("store")
    rain = home / "rain100h"
    make_rain100h(rain, layout="prenet", n_train=1800, n_test=100, size=(24, 24))
    market = make_market1501(home / "market")
    common = ("--quiet", "--results", home / "results")
    runs = (
        ("--method", "identity", "--dataset", "rain100h", "--data-root", rain, "--limit", "6",
         "--dataset-option", "strict=false", *common),
        ("--method", "s-dsen", "--untrained", "--dataset", "rain100h", "--data-root", rain, "--limit", "6",
         "--metric", "psnr,ssim,ssim@sdsen-official", "--dataset-option", "strict=false", *common),
        ("--method", "identity", "--dataset", "rain-synth", "--limit", "6", *common),
        ("--method", "precomputed-features", "--dataset", "market1501", "--data-root", market,
         "--checkpoint", layumi_result(home / "pytorch_result.mat"), "--option", f"names_root={market}",
         "--dataset-option", "strict=false", *common),
    )
    with pytest.MonkeyPatch.context() as patch:  # module scope: the per-test isolation is not active yet
        for name in ("HARNESS_DATA", "HARNESS_CACHE", "TORCH_HOME"):
            patch.setenv(name, str(home / name.lower()))
        reset_plugins()
        for args in runs:
            assert main([str(a) for a in ("run", *args)]) == 0
        reset_plugins()
    return home


def test_publish_site_joins_measured_rows_with_the_papers_numbers(cli, store):
    out = store / "site"
    code, stdout, err = cli("publish", "--out", out, "--results", store / "results")
    assert code == 0, err
    assert "open" in stdout and (out / "index.html").is_file()
    index = (out / "index.html").read_text()
    assert 'href="lb-s-dsen.html"' in index and 'href="lb-hi-cmd.html"' in index

    sdsen = (out / "lb-s-dsen.html").read_text()
    rain100h = sdsen[sdsen.index('data-dataset="rain100h"'):sdsen.index('data-dataset="rain800"')]
    assert "27.16" in rain100h and "0.8589" in rain100h and "sdsen-official" in rain100h
    assert 'class="measured"' in rain100h and 'class="reported"' in rain100h
    assert "Δ " in rain100h and "vs paper 0.8589 (Table 2)" in rain100h  # untrained S-DSEN against its paper row
    assert rain100h.count("vs paper 0.8589") == 1  # the MATLAB-convention SSIM of the same run gets no Δ
    assert "no Δ to the paper&#39;s 27.16: its convention is not stated" in rain100h
    assert "incomparable" in rain100h  # Table 4 baselines: convention unknown
    assert "copied" in rain100h
    assert 'class="ci"' in rain100h  # bootstrap intervals of measured means

    hicmd = (out / "lb-hi-cmd.html").read_text()
    regdb = hicmd[hicmd.index('data-dataset="regdb"'):hicmd.index('data-dataset="sysu-mm01"')]
    assert "70.93" in regdb and "Table 1" in regdb

    market = (out / "lb-reid-market1501.html").read_text()
    assert 'class="measured"' in market and 'class="ci"' in market  # interval over queries

    runs = sorted(out.glob("run-*.html"))
    assert len(runs) == 4
    reid_page = next(p.read_text() for p in runs if "precomputed-features" in p.name)
    assert "cmc: cmc" in reid_page and "<polyline" in reid_page  # the CMC curve
    derain_page = next(p.read_text() for p in runs if "s-dsen" in p.name)
    assert "Gallery" in derain_page and "ground truth" in derain_page and "Provenance" in derain_page
    images = sorted((out / "images").rglob("*.png"))
    assert images and all(p.resolve().is_relative_to(out.resolve()) for p in images)
    assert {p.name.rsplit(".", 2)[1] for p in images} == {"input", "output", "target"}
    for page in out.glob("*.html"):  # offline: nothing refers to another host
        text = page.read_text()
        assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text


def test_publish_markdown_and_json(cli, store):
    results = ("--results", store / "results")
    code, out, err = cli("publish", "--format", "markdown", "--leaderboard", "s-dsen", *results)
    assert code == 0, err
    assert "| S-DSEN | reported (Table 2) | **27.16** | **0.8589** |" in out
    assert "| identity | measured |" in out
    code, out, err = cli("publish", "--format", "json", *results)
    assert code == 0, err
    boards = {board["name"]: board for board in json.loads(out)["leaderboards"]}
    regdb = next(t for t in boards["hi-cmd"]["tables"] if t["dataset"] == "regdb")
    hicmd = next(r for r in regdb["rows"] if r["method"] == "Hi-CMD")
    assert hicmd["cells"]["rank-1[hi-cmd]"]["value"] == 70.93 and hicmd["source"]["table"] == "Table 1"
    measured = [r for t in boards["reid-market1501"]["tables"] for r in t["rows"] if r["kind"] == "measured"]
    cell = measured[0]["cells"]["rank-1[market1501]"]
    assert cell["ci"]["low"] <= cell["value"] <= cell["ci"]["high"] and cell["ci"]["seed"] == 0
    code, _, err = cli("publish", "--leaderboard", "nope", "--format", "json")
    assert code == 2 and "nope" in err
    code, _, err = cli("publish")
    assert code == 2 and "--out" in err


def test_plugin_text_is_escaped_and_files_stay_inside(cli, tmp_path):
    code, _, err = cli("--plugins-dir", FIXTURES, "run", "--method", "evil-derainer", "--dataset", "rain-synth",
                       "--limit", "2", "--quiet")
    assert code == 0, err
    out = tmp_path / "site"
    code, _, err = cli("--plugins-dir", FIXTURES, "publish", "--out", out)
    assert code == 0, err
    page = next(out.glob("run-*evil-derainer*.html")).read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; returns the rainy input" in page
    assert "<script>alert(1)" not in page
    assert safe_name("../../etc/passwd") == "_.._etc_passwd" and safe_name("..") == "_"


DEMO_BOARD = """
name: demo
title: "Demo <b>board</b>"
task: deraining
papers: {demo-paper: "A paper"}
datasets: [{name: demo-pairs, split: test}]
conventions: {demo: {match: {metric: demo-mae}}}
metrics: [{metric: demo-mae, key: mae, higher_is_better: false, precision: 3, tolerance: 0.01}]
reported:
  - {method: "Paper method", source: {paper: demo-paper, table: "Table 9", row: "x"}, values: {demo-pairs: {mae: 0.001}},
     harness_method: flaky, conventions: demo}
  - {method: "Unknown protocol", source: {paper: demo-paper, table: "Table 9", row: "y"}, values: {demo-pairs: {mae: 0.5}}}
"""


def test_extra_leaderboards_failed_and_stale_rows(cli, tmp_path):
    from cli_helpers import FIXTURE_PLUGINS

    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "demo.yaml").write_text(DEMO_BOARD)
    data = tmp_path / "demo"
    data.mkdir()
    (data / "READY").write_text("ok")
    base = ("--plugins-dir", FIXTURE_PLUGINS)
    assert cli(*base, "run", "--method", "flaky", "--dataset", "demo-pairs", "--data-root", data, "--quiet")[0] == 0
    code, _, _ = cli(*base, "run", "--method", "flaky", "--dataset", "demo-pairs", "--data-root", data, "--quiet",
                     "--option", "crash_after=2")
    assert code == 1  # stored as a failed run
    code, out, err = cli(*base, "publish", "--leaderboards", boards, "--leaderboard", "demo", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)["leaderboards"][0]["tables"][0]["rows"]
    measured = [row for row in rows if row["kind"] == "measured"]
    assert sorted(row["badges"] == ["failed"] for row in measured) == [False, True]
    ok = next(row for row in measured if not row["badges"])
    assert ok["reproduces"] == "Paper method (Table 9)"
    assert ok["cells"]["mae"]["delta"] == pytest.approx(ok["cells"]["mae"]["value"] - 0.001)
    assert ok["cells"]["mae"]["convention"] == "demo" and ok["cells"]["mae"]["best"] is False
    paper_best = next(row for row in rows if row["method"] == "Paper method")
    assert paper_best["cells"]["mae"]["best"] is True  # lower is better

    # A record written by an older version of the method is flagged stale.
    record_path = next((Path(os.environ["HARNESS_RESULTS"]) / "runs").glob(f"{ok['run']['run_id']}/record.json"))
    record = json.loads(record_path.read_text())
    record["method"]["version"] = "0"
    record_path.write_text(json.dumps(record))
    code, out, err = cli(*base, "publish", "--leaderboards", boards, "--out", tmp_path / "site")
    assert code == 0, err
    page = (tmp_path / "site" / "lb-demo.html").read_text()
    assert 'class="badge stale"' in page and 'class="badge failed"' in page
    assert "Demo &lt;b&gt;board&lt;/b&gt;" in page
    code, _, err = cli(*base, "leaderboards", "--leaderboards", tmp_path / "none")
    assert code == 2 and "none" in err


def test_records_adapter_reads_labelled_records(tmp_path):
    from harness.publish.records import from_record

    base = {"run_id": "r1", "created": "2026-01-01T00:00:00", "status": "ok", "task": "deraining",
            "method": {"name": "m", "version": "1", "options": {}}, "dataset": {"name": "d", "split": "test"},
            "files": {"samples": "samples.jsonl", "images": []}}
    entry = {"values": {"ssim": 0.5}, "n": 2, "higher_is_better": True, "params": {"convention": "matlab"},
             "convention": {}, "details": {}, "version": "1"}
    (tmp_path / "samples.jsonl").write_text('{"id": "a", "ssim": 0.4, "ssim@official": 0.7}\n'
                                            '{"id": "b", "ssim": 0.6, "ssim@official": 0.9}\n')
    labelled = {"ssim": {**entry, "metric": "ssim", "label": "ssim"},
                "ssim@official": {**entry, "metric": "ssim", "label": "ssim@official", "values": {"ssim": 0.8},
                                  "params": {"convention": "sdsen-official"}}}
    run = from_record({**base, "metrics": labelled}, tmp_path)
    official = run.value("ssim@official", "ssim")
    assert official.metric == "ssim" and official.per_sample == {"a": 0.7, "b": 0.9}
    assert run.value("ssim", "ssim").per_sample == {"a": 0.4, "b": 0.6}
    assert official.protocol_digest != run.value("ssim", "ssim").protocol_digest
    with pytest.raises(Exception, match="not a harness result record"):
        from_record({**base, "metrics": {"ssim": entry}}, tmp_path)  # no metric/label: not this format
