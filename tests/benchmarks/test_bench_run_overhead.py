"""`harness run` on rain-synth against a bare loop over the same model and metrics, in the same run.

Target: the runner (provenance, digests, keys, progress, per-sample rows, saved images, storing the
predictions tier, the store) costs at most 10% beyond loading the samples, predicting and scoring them
by hand. Each round gets an empty cache, so nothing is reused.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

import harness
from harness.plugins import get_plugins
from harness.run.cache import Cache
from harness.run.cells import RunSpec, execute_cell, plan_cell
from harness.run.store import ResultStore

ROUNDS = 3
OPTIONS = {"stages": 2}  # S-DSEN_s2 keeps the benchmark short; a cheaper model makes overhead weigh more


@pytest.fixture(scope="module")
def rain_synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "rain-synth"
    dataset = harness.create_dataset("rain-synth", root=root)
    dataset.verify("test")
    return root


def bare_loop(root) -> float:
    dataset = harness.create_dataset("rain-synth", root=root)
    method = harness.create_method("s-dsen", **OPTIONS)
    method.load(None, "cpu")
    metrics = [harness.create_metric("psnr", target_field="clean"), harness.create_metric("ssim", target_field="clean")]
    for metric in metrics:
        metric.reset()
    for sample in dataset.samples("test"):
        predictions = method.predict([{"id": sample["id"], "rainy": sample["rainy"]}])
        for metric in metrics:
            metric.update(predictions, [sample])
    return sum(next(iter(metric.compute().values())) for metric in metrics)


def harness_run(root, results) -> float:
    plugins = get_plugins()
    spec = RunSpec(method="s-dsen", dataset="rain-synth", data_root=root, untrained=True, method_options=OPTIONS)
    cache = Cache(results / "cache")
    record = execute_cell(plan_cell(spec, plugins), plugins, ResultStore(results), cache, progress=True)
    return sum(next(iter(metric["values"].values())) for metric in record["metrics"].values())


def test_run_overhead_vs_bare_loop(benchmark, rain_synth_root, tmp_path):
    torch.manual_seed(0)
    bare_times, run_times = [], []
    for index in range(ROUNDS):  # alternate the two so machine noise hits both alike
        tick = time.perf_counter()
        bare_loop(rain_synth_root)
        bare_times.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        harness_run(rain_synth_root, tmp_path / f"results-{index}")
        run_times.append(time.perf_counter() - tick)
    benchmark.pedantic(harness_run, args=(rain_synth_root, tmp_path / "results-bench"), rounds=1, iterations=1)
    ratio = statistics.median(run_times) / statistics.median(bare_times)
    benchmark.extra_info.update(
        bare_median_s=statistics.median(bare_times), run_median_s=statistics.median(run_times), ratio=ratio
    )
    print(f"\nharness run / bare loop = {ratio:.3f} (bare {statistics.median(bare_times):.2f}s, "
          f"run {statistics.median(run_times):.2f}s)")
    assert ratio <= 1.10
