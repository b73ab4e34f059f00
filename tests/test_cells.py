"""Cells that can be keyed and cached: keys before work, labels, stored predictions and scores, reliability."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
import torch

from harness.errors import DataError, UsageError
from harness.plugins import get_plugins
from harness.run.cache import Cache
from harness.run.cells import RunSpec, execute_cell, plan_cell
from harness.run.store import ResultStore

from cli_helpers import FIXTURE_PLUGINS


@pytest.fixture
def demo_root(tmp_path):
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    return root


@pytest.fixture
def plugins():
    return get_plugins([FIXTURE_PLUGINS])


def run(cli, demo_root, *extra, method="flaky"):
    return cli("run", "--plugins-dir", FIXTURE_PLUGINS, "--method", method, "--dataset", "demo-pairs",
               "--data-root", demo_root, "--quiet", "--json", *extra)


def spec(demo_root, **changes):
    return RunSpec(**{"method": "flaky", "dataset": "demo-pairs", "data_root": demo_root, **changes})


# -- keys ------------------------------------------------------------------------------------------
def test_keys_are_stable_and_move_with_what_changes_the_numbers(plugins, demo_root):
    base = plan_cell(spec(demo_root), plugins).keys
    assert plan_cell(spec(demo_root), plugins).keys == base
    other_option = plan_cell(spec(demo_root, method_options={"nan_at": "x"}), plugins).keys
    assert other_option.prediction != base.prediction
    assert plan_cell(spec(demo_root, limit=3), plugins).keys.prediction != base.prediction
    rescaled = plan_cell(spec(demo_root, metric_options={"demo-mae": {"scale": 2.0}}), plugins).keys
    assert rescaled.prediction == base.prediction and rescaled.scores["demo-mae"] != base.scores["demo-mae"]
    (demo_root / "READY").write_text("changed")
    assert plan_cell(spec(demo_root), plugins).keys.prediction != base.prediction


def test_spec_ships_to_a_worker_and_replans_to_the_same_keys(plugins, demo_root):
    import pickle

    from harness.plugins import Plugins

    original = spec(demo_root, metrics=["demo-mae", "demo-mae@x"], limit=4)
    shipped = pickle.loads(pickle.dumps(original))
    assert plan_cell(shipped, Plugins([FIXTURE_PLUGINS])).keys == plan_cell(original, plugins).keys
    assert plan_cell(original, plugins).device == "cpu"  # "auto" without CUDA


def test_editing_a_folder_plugin_changes_its_digest_and_the_keys(tmp_path, demo_root):
    from harness.plugins import Plugins

    folder = tmp_path / "plugins"
    folder.mkdir()
    source = (FIXTURE_PLUGINS / "demo_plugin.py").read_text()
    (folder / "demo_plugin.py").write_text(source)
    first = Plugins([folder])
    digest = first.source_digest("demo_plugin")
    assert digest.startswith("sha256:")
    key = plan_cell(spec(demo_root), first).keys
    (folder / "demo_plugin.py").write_text(source + "\n# edited\n")
    second = Plugins([folder])
    assert second.source_digest("demo_plugin") != digest
    assert plan_cell(spec(demo_root), second).keys.prediction != key.prediction


def test_record_carries_keys_plugin_digests_seed_and_resolved_root(cli, demo_root, monkeypatch, tmp_path):
    monkeypatch.chdir(demo_root.parent)
    code, out, err = run(cli, "demo", "--seed", "3")
    assert code == 0, err
    record = json.loads(out)
    assert record["dataset"]["root"] == str(demo_root.resolve())
    assert record["method"]["seed"] == 3
    assert record["plugins"]["method"]["source_digest"].startswith("sha256:")
    assert set(record["keys"]) == {"prediction", "scores"} and "cell_key" not in record
    assert {"tf32_matmul", "tf32_cudnn"} <= set(record["environment"]["numerics"])
    assert record["environment"]["torch_threads"] >= 1


# -- labels ----------------------------------------------------------------------------------------
def test_same_metric_twice_under_labels(cli, demo_root):
    code, out, err = run(cli, demo_root, "--metric", "demo-mae,demo-mae@double",
                         "--metric-option", "demo-mae@double.scale=2")
    assert code == 0, err
    record = json.loads(out)
    single, double = record["metrics"]["demo-mae"], record["metrics"]["demo-mae@double"]
    assert double["metric"] == "demo-mae" and double["label"] == "demo-mae@double"
    assert double["values"]["mae"] == pytest.approx(2 * single["values"]["mae"])
    assert double["score_key"] != single["score_key"]
    store = ResultStore()
    with sqlite3.connect(store.index_path) as db:
        rows = db.execute("SELECT label, key FROM metric_values ORDER BY label").fetchall()
    assert rows == [("demo-mae", "mae"), ("demo-mae@double", "mae")]
    run_dir = store.runs_dir / record["run_id"]
    first = json.loads((run_dir / "samples.jsonl").read_text().splitlines()[0])
    assert first["demo-mae@double"] == pytest.approx(2 * first["demo-mae"])
    code, out, _ = cli("results", "--format", "json")
    [row] = json.loads(out)
    assert row["mae"] == pytest.approx(single["values"]["mae"]) and row["demo-mae@double:mae"] > row["mae"]
    assert row["labels"] == "demo-mae,demo-mae@double"


def test_tag_selects_the_declared_preset_option(plugins, demo_root):
    cell = plan_cell(spec(demo_root, metrics=["ssim", "ssim@sdsen-official", "psnr@basicsr", "ssim@mine"],
                          metric_options={"ssim@mine": {"convention": "skimage-default"}}), plugins)
    assert cell.metrics["ssim"].config["convention"] == "matlab"
    assert cell.metrics["ssim@sdsen-official"].config["convention"] == "sdsen-official"
    assert cell.metrics["psnr@basicsr"].config["convention"] == "basicsr"
    assert cell.metrics["ssim@mine"].config["convention"] == "skimage-default"


def test_bad_labels_are_refused(plugins, demo_root):
    with pytest.raises(UsageError, match="given twice"):
        plan_cell(spec(demo_root, metrics=["demo-mae", "demo-mae"]), plugins)
    with pytest.raises(UsageError, match="not being run"):
        plan_cell(spec(demo_root, metric_options={"demo-mae@x": {"scale": 2}}), plugins)
    with pytest.raises(UsageError, match="NAME@TAG"):
        plan_cell(spec(demo_root, metrics=["demo-mae@"]), plugins)


# -- store lookups ---------------------------------------------------------------------------------
def test_find_complete_matches_prediction_and_every_score_key(plugins, demo_root, tmp_path):
    store, cache = ResultStore(tmp_path / "results"), Cache(tmp_path / "cache")
    cell = plan_cell(spec(demo_root), plugins)
    assert store.find_complete(cell) is None
    record = execute_cell(cell, plugins, store, cache, progress=False)
    found = store.find_complete(plan_cell(spec(demo_root), plugins))
    assert found["run_id"] == record["run_id"]
    assert store.find_complete(plan_cell(spec(demo_root, metrics=["demo-mae", "demo-mae@x"]), plugins)) is None
    assert store.find_complete(plan_cell(spec(demo_root, limit=2), plugins)) is None
    failing = plan_cell(spec(demo_root, method_options={"crash_after": 2}), plugins)
    with pytest.raises(Exception):
        execute_cell(failing, plugins, store, cache, progress=False)
    assert store.find_complete(failing) is None  # failed records never count as complete


def test_old_index_layout_is_rebuilt(cli, demo_root):
    assert run(cli, demo_root)[0] == 0
    store = ResultStore()
    with sqlite3.connect(store.index_path) as db:  # pretend an index written by the previous layout
        db.execute("PRAGMA user_version = 1")
    assert len(store.records()) == 1
    with sqlite3.connect(store.index_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert db.execute("SELECT count(*) FROM scores").fetchone()[0] == 1


# -- predictions and scores tiers ------------------------------------------------------------------
def test_new_metric_is_scored_from_stored_predictions_without_the_model(cli, demo_root, monkeypatch):
    code, out, err = run(cli, demo_root)
    assert code == 0, err
    first = json.loads(out)
    monkeypatch.setenv("DEMO_FAIL_LOAD", "1")
    code, out, err = run(cli, demo_root, "--metric", "demo-mae,demo-mae@x,psnr", "--metric-option", "demo-mae@x.scale=3")
    assert code == 0, err
    second = json.loads(out)
    assert second["reused"] == {"scores": ["demo-mae"], "predictions": True}
    assert second["metrics"]["demo-mae"]["values"] == first["metrics"]["demo-mae"]["values"]
    assert second["metrics"]["demo-mae@x"]["values"]["mae"] == pytest.approx(3 * first["metrics"]["demo-mae"]["values"]["mae"])
    assert second["samples"] == 6 and second["run_id"] != first["run_id"]
    rows = [json.loads(line) for line in (ResultStore().runs_dir / second["run_id"] / "samples.jsonl").read_text().splitlines()]
    assert all({"demo-mae", "demo-mae@x", "psnr"} <= set(row) for row in rows)
    code, out, err = run(cli, demo_root)  # everything stored: neither the model nor the metric runs
    assert code == 0, err
    assert json.loads(out)["reused"]["scores"] == ["demo-mae"] and json.loads(out)["samples"] == 6


def test_stored_predictions_are_lossless(plugins, demo_root, tmp_path):
    from harness.run.predictions import iter_predictions

    cache = Cache(tmp_path / "cache")
    cell = plan_cell(spec(demo_root), plugins)
    execute_cell(cell, plugins, ResultStore(tmp_path / "r"), cache, progress=False)
    with cache.use("predictions", cell.keys.prediction) as folder:
        stored = [p for _, batch in iter_predictions(folder) for p in batch]
    expected = [s["rainy"] for s in cell.dataset.samples("test")]
    assert len(stored) == 6 and all(torch.equal(a, b) and a.dtype == torch.float32 for a, b in zip(stored, expected))


def test_non_deterministic_predictions_are_not_reused(cli, demo_root, tmp_path, monkeypatch):
    loads = tmp_path / "loads.txt"
    monkeypatch.setenv("DEMO_LOADS", str(loads))
    for _ in range(2):
        code, out, err = run(cli, demo_root, method="noisy")
        assert code == 0, err
        assert json.loads(out)["reused"] == {"scores": [], "predictions": False}
    assert loads.read_text().splitlines() == ["noisy", "noisy"]
    assert Cache().usage()["predictions"]["entries"] == 0


# -- paired and distribution metrics ---------------------------------------------------------------
def test_paired_metric_refused_on_unpaired_task(plugins, tmp_path):
    root = tmp_path / "zebras"
    root.mkdir()
    with pytest.raises(UsageError, match="unpaired"):
        plan_cell(RunSpec(method="flaky", dataset="demo-unpaired", data_root=root, metrics=["psnr"]), plugins)


def test_reference_set_digest_enters_the_score_key(plugins, tmp_path):
    root = tmp_path / "zebras"
    root.mkdir()
    for name in "abcde":
        (root / f"{name}.txt").write_text(name)
    make = lambda: plan_cell(RunSpec(method="flaky", dataset="demo-unpaired", data_root=root, metrics=["demo-mean"]), plugins)  # noqa: E731
    cell = make()
    assert cell.metrics["demo-mean"].reference_digest == "digest-of-a.txt,b.txt,c.txt,d.txt,e.txt"
    record = execute_cell(cell, plugins, ResultStore(tmp_path / "r"), Cache(tmp_path / "c"), progress=False)
    assert record["dataset"]["reference"]["files"] == 5 and record["samples"] == 4
    (root / "f.txt").write_text("f")
    changed = make()
    assert changed.keys.scores["demo-mean"] != cell.keys.scores["demo-mean"]


def test_metric_from_python_must_be_told_its_target_field():
    import harness

    metric = harness.create_metric("psnr")
    sample = {"id": "a", "clean": torch.rand(3, 8, 8)}
    with pytest.raises(UsageError, match="target_field"):
        metric.update([sample["clean"]], [sample])
    told = harness.create_metric("psnr", target_field="clean")
    told.update([sample["clean"]], [sample])


# -- batching, threads -----------------------------------------------------------------------------
def test_batch_size_is_declared_and_overridable(plugins, demo_root, tmp_path):
    store, cache = ResultStore(tmp_path / "r"), Cache(tmp_path / "c")
    cell = plan_cell(spec(demo_root, batch_size=4), plugins)
    record = execute_cell(cell, plugins, store, cache, progress=False)
    assert cell.method.batches == [4, 2] and record["method"]["batch_size"] == 4
    assert plan_cell(spec(demo_root), plugins).batch_size == 1
    assert plan_cell(spec(demo_root, method="tiny-net", untrained=True), plugins).batch_size == 4
    with pytest.raises(UsageError, match="--batch-size"):
        plan_cell(spec(demo_root, batch_size=0), plugins)


def test_threads_follow_affinity_and_cgroup_quota(tmp_path):
    from harness.run.threads import available_cpus, choose_threads

    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert available_cpus(cpu_max) == min(len(os.sched_getaffinity(0)), 2)
    cpu_max.write_text("max 100000\n")
    assert available_cpus(cpu_max) == len(os.sched_getaffinity(0))
    assert choose_threads(workers=4, cpus=8) == 2 and choose_threads(workers=16, cpus=8) == 1
    assert choose_threads(workers=4, override=3, cpus=8) == 3
    with pytest.raises(UsageError):
        choose_threads(override=0)


def test_threads_option_is_applied_and_recorded(cli, demo_root):
    before = torch.get_num_threads()
    try:
        code, out, err = run(cli, demo_root, "--threads", "1")
        assert code == 0, err
        assert json.loads(out)["environment"]["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_prefetch_keeps_order_and_reraises_errors():
    from harness.run.prefetch import batched, prefetch

    assert list(prefetch(batched(iter(range(7)), 3))) == [[0, 1, 2], [3, 4, 5], [6]]

    def broken():
        yield 1
        raise DataError("bad file x.png")

    got = []
    with pytest.raises(DataError, match="x.png"):
        for item in prefetch(broken()):
            got.append(item)
    assert got == [1]


# -- reliability -----------------------------------------------------------------------------------
def test_non_finite_prediction_fails_naming_the_sample(cli, demo_root):
    code, _, err = run(cli, demo_root, "--option", "nan_at=003")
    assert code == 1 and "'003'" in err and "non-finite" in err
    [record] = ResultStore().records()
    assert record["status"] == "failed" and record["samples"] == 3
    assert Cache().usage()["predictions"]["entries"] == 0  # a failed cell stores no predictions


def test_untrained_runs_are_seeded_and_repeatable(cli, demo_root, tmp_path, monkeypatch):
    values = []
    for seed, cache in ((0, "a"), (0, "b"), (1, "c")):
        monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / cache))  # fresh caches: really recompute
        code, out, err = run(cli, demo_root, "--untrained", "--seed", str(seed), method="tiny-net")
        assert code == 0, err
        record = json.loads(out)
        assert record["method"]["untrained"] and record["method"]["seed"] == seed
        values.append(record["metrics"]["demo-mae"]["values"]["mae"])
    assert values[0] == values[1] != values[2]


def test_data_error_mid_run_keeps_the_record_and_exits_2(cli, demo_root):
    code, _, err = run(cli, demo_root, "--dataset-option", "corrupt_at=4")
    assert code == 2 and "sample 004 is corrupt" in err and "record:" in err
    [record] = ResultStore().records()
    assert record["status"] == "failed" and record["error"]["type"] == "DataError" and record["samples"] == 4


def test_run_folders_follow_the_umask(cli, demo_root):
    old = os.umask(0o002)
    try:
        assert run(cli, demo_root)[0] == 0
    finally:
        os.umask(old)
    [record] = ResultStore().records()
    mode = (ResultStore().runs_dir / record["run_id"]).stat().st_mode & 0o777
    assert mode == 0o775


def test_checkpoint_trained_with_other_model_options_is_refused(cli, demo_root, tmp_path):
    out = tmp_path / "trained"
    code, _, err = cli("train", "--plugins-dir", FIXTURE_PLUGINS, "--method", "tiny-net", "--dataset", "demo-pairs",
                       "--data-root", demo_root, "--steps", "2", "--batch-size", "2", "--out", out, "--quiet")
    assert code == 0, err
    assert run(cli, demo_root, "--checkpoint", out, method="tiny-net")[0] == 0
    code, _, err = run(cli, demo_root, "--checkpoint", out, "--option", "bias=false", method="tiny-net")
    assert code == 2 and "bias=False (trained with True)" in err


def test_record_says_how_a_trained_checkpoint_was_trained(cli, demo_root, tmp_path):
    """The cell's method options are the inference ones; training-only options live in the training manifest,
    which the record carries, and the run's summary line names."""
    out = tmp_path / "trained"
    code, _, err = cli("train", "--plugins-dir", FIXTURE_PLUGINS, "--method", "tiny-net", "--dataset", "demo-pairs",
                       "--data-root", demo_root, "--steps", "3", "--batch-size", "2", "--seed", "5", "--out", out, "--quiet")
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    code, text, err = cli("run", "--plugins-dir", FIXTURE_PLUGINS, "--method", "tiny-net", "--dataset", "demo-pairs",
                          "--data-root", demo_root, "--quiet", "--checkpoint", out)
    assert code == 0, err
    assert "trained 3 steps on demo-pairs/train (seed 5, batch 2)" in text
    [record] = ResultStore().records()
    training = record["method"]["training"]
    assert training == json.loads(json.dumps(manifest["identity"]))
    assert (training["steps"], training["seed"], training["dataset"]) == (3, 5, "demo-pairs")
    assert run(cli, demo_root)[0] == 0  # weights not from `harness train`: nothing to say
    assert [r["method"]["training"] for r in ResultStore().records()][-1] is None


def test_results_show_differing_options_and_checkpoint(cli, demo_root):
    assert run(cli, demo_root)[0] == 0
    assert run(cli, demo_root, "--option", "nan_at=zzz")[0] == 0
    code, out, _ = cli("results", "--format", "json")
    rows = json.loads(out)
    assert [row["options"] for row in rows] == ["nan_at=", "nan_at=zzz"]
    assert all(row["checkpoint"] == "-" for row in rows)
    code, out, _ = cli("results")
    assert "nan_at=zzz" in out and "checkpoint" in out
