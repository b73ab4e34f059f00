"""`latency`, `params`, `macs`: counts against hand-computed values, latency statistics against numpy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from harness_plugins.metrics.model_cost import (
    count_macs,
    fixed_shape_view,
    latency_stats,
    measure_latency,
    parse_shape,
)
from torch import nn

import harness
from harness import Method, Sample, UsageError
from harness.tasks import DERAINING, INPAINTING


class TinyNet(nn.Module):
    """conv 3→4 (3×3, pad 1) → ReLU → conv 4→2 (1×1); a known cost."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(x)))


class TinyMethod(Method):
    name = "tiny-test-method"
    tasks = frozenset({"deraining"})

    def load(self, checkpoint: Path | None, device: str) -> None:
        self._model = TinyNet().to(device).eval()
        self.seen: list[tuple[int, ...]] = []

    def predict(self, samples: list[Sample]) -> list[Any]:
        self.seen.extend(tuple(s["rainy"].shape) for s in samples)
        return [self._model(s["rainy"][None])[0] for s in samples]


class SleepyModelFree(Method):
    """Model-free: each prediction takes at least 4 ms."""

    name = "sleepy-test-method"
    tasks = frozenset({"deraining"})

    def predict(self, samples: list[Sample]) -> list[Any]:
        time.sleep(0.004)
        return [s["rainy"] for s in samples]


def rain_sample(h: int = 10, w: int = 12) -> Sample:
    g = torch.Generator().manual_seed(0)
    return {"id": "a", "rainy": torch.rand(3, h, w, generator=g), "clean": torch.rand(3, h, w, generator=g)}


def loaded(method: Method) -> Method:
    method.load(None, "cpu")
    return method


# -- params ---------------------------------------------------------------------------------------
def test_params_counts_shared_weights_once_and_splits_trainable():
    shared = nn.Conv2d(3, 3, 3)  # 81 + 3 = 84
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.BatchNorm2d(3), nn.Linear(5, 2))  # BN 6, Linear 12
    model[3].weight.requires_grad_(False)
    counts = harness.count_parameters(model)
    assert counts.params == sum(p.numel() for p in model.parameters()) == 84 + 6 + 12
    assert counts.trainable == 84 + 6 + 12 - 3
    assert counts.references == counts.tensors + 2  # the shared conv's weight and bias seen twice
    assert counts.buffer_elements == 3 + 3 + 1  # running mean, var, num_batches_tracked


def test_params_metric_on_bound_method():
    metric = harness.create_metric("params")
    metric.reset()
    metric.bind_model(loaded(TinyMethod()), DERAINING, "cpu")
    assert metric.update([None], [rain_sample()]) is None
    # conv1: 4*3*3*3 + 4 = 112; conv2: 2*4 + 2 = 10
    assert metric.compute() == {"params": 122, "params-trainable": 122}
    assert metric.details()["tensors"] == 4


def test_sdsen_parameter_count_is_the_papers():
    metric = harness.create_metric("params")
    method = harness.create_method("s-dsen")
    method.load(None, "cpu")
    metric.bind_model(method, DERAINING, "cpu")
    assert metric.compute()["params"] == 130_998


@pytest.mark.parametrize("name", ["params", "macs"])
def test_model_free_method_is_a_usage_error_naming_it(name):
    metric = harness.create_metric(name)
    with pytest.raises(UsageError, match="sleepy-test-method"):
        metric.bind_model(SleepyModelFree(), DERAINING, "cpu")


# -- macs -----------------------------------------------------------------------------------------
def test_macs_hand_computed_for_small_conv_net():
    method = loaded(TinyMethod())
    metric = harness.create_metric("macs")
    metric.bind_model(method, DERAINING, "cpu")
    metric.update([None], [rain_sample(10, 12)])
    # per output pixel: conv1 4 outputs × 27 MACs, conv2 2 outputs × 4 MACs; 10×12 pixels
    expected = 10 * 12 * (4 * 27 + 2 * 4)
    assert metric.compute() == {"macs": expected}
    assert metric.details()["flops"] == 2 * expected
    assert metric.details()["input_shapes"]["rainy"] == [3, 10, 12]


def test_macs_at_fixed_shape_and_matmul():
    method = loaded(TinyMethod())
    metric = harness.create_metric("macs", shape="16,8")
    metric.bind_model(method, DERAINING, "cpu")
    metric.update([None], [rain_sample(10, 12)])
    assert metric.compute()["macs"] == 16 * 8 * (4 * 27 + 2 * 4)
    linear = nn.Linear(7, 5)
    assert count_macs(lambda: linear(torch.rand(3, 7)))["macs"] == 3 * 7 * 5


# -- the fixed-shape input --------------------------------------------------------------------------
def test_parse_shape():
    assert parse_shape((), "m") is None
    assert parse_shape("321,481", "m") == (321, 481)
    assert parse_shape(("321", "481"), "m") == (321, 481)
    for bad in ("321", "a,b", "0,4", "1,2,3"):
        with pytest.raises(UsageError, match="shape"):
            parse_shape(bad, "m")
    with pytest.raises(UsageError, match="shape"):
        harness.create_metric("latency", shape="12")


def test_fixed_shape_view_resizes_images_and_keeps_masks_binary():
    sample = {
        "id": "x",
        "image": torch.rand(3, 20, 20),
        "masked": torch.rand(3, 20, 20),
        "mask": (torch.rand(1, 20, 20) > 0.5).float(),
    }
    view = fixed_shape_view(sample, INPAINTING, (8, 6))
    assert set(view) == {"id", "masked", "mask"}  # never the target
    assert view["masked"].shape == (3, 8, 6) and view["mask"].shape == (1, 8, 6)
    assert set(view["mask"].unique().tolist()) <= {0.0, 1.0}
    assert fixed_shape_view(sample, INPAINTING, None)["masked"] is sample["masked"]


# -- latency --------------------------------------------------------------------------------------
def test_latency_stats_match_numpy_percentiles():
    data = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    stats = latency_stats(data, "linear")
    assert stats["median"] == pytest.approx(np.percentile(data, 50))
    assert stats["p90"] == pytest.approx(7.5)  # linear: rank 0.9 * 5 = 4.5 → 5 + 0.5 * (10 - 5)
    assert stats["p99"] == pytest.approx(np.percentile(data, 99))
    assert stats["mean"] == pytest.approx(25 / 6) and stats["min"] == 1.0
    assert stats["throughput_per_s"] == pytest.approx(1000 / (25 / 6))
    assert latency_stats(data, "lower")["p90"] == 5.0  # an order statistic instead


def test_measure_latency_times_each_call_after_warmup():
    calls = []
    samples = measure_latency(lambda: (calls.append(1), time.sleep(0.003)), device="cpu", warmup=2, iters=4)
    assert len(calls) == 6 and len(samples) == 4
    assert min(samples) >= 3.0
    with pytest.raises(UsageError, match="cuda-event"):
        measure_latency(lambda: None, device="cpu", warmup=0, iters=1, timer="cuda-event")


def test_latency_metric_on_cpu_records_what_it_measured():
    method = SleepyModelFree()  # latency needs no network: it times predict
    metric = harness.create_metric("latency", warmup=1, iters=5, shape="6,7")
    metric.reset()
    metric.bind_model(method, DERAINING, "cpu")
    assert metric.update([None], [rain_sample()]) is None
    metric.update([None], [{**rain_sample(), "id": "b"}])  # only the first sample is used
    values = metric.compute()
    details = metric.details()
    assert details["sample"] == "a"
    assert len(details["samples_ms"]) == 5 and details["warmup"] == 1 and details["iters"] == 5
    assert values["latency-ms"] == pytest.approx(np.percentile(details["samples_ms"], 50))
    assert values["latency-p90-ms"] == pytest.approx(np.percentile(details["samples_ms"], 90))
    assert values["latency-min-ms"] >= 4.0
    assert details["stats_ms"]["throughput_per_s"] == pytest.approx(1000 / values["latency-mean-ms"])
    assert set(values) == {"latency-ms", "latency-p90-ms", "latency-p99-ms", "latency-mean-ms", "latency-min-ms"}
    assert details["device"]["device"] == "cpu" and details["device"]["measures"] == "CPU latency"
    assert details["device"]["name"] and details["device"]["torch_threads"] >= 1
    assert details["input_shapes"]["rainy"] == [3, 6, 7]
    assert details["timer"] == "wallclock" and details["percentile_method"] == "linear"
    assert details["dtype"].startswith("n/a")
    assert harness.create_metric("latency").higher_is_better is False


def test_latency_defaults_are_modest_on_cpu_and_time_the_model():
    method = loaded(TinyMethod())
    metric = harness.create_metric("latency")
    metric.bind_model(method, DERAINING, "cpu")
    metric.update([None], [rain_sample()])
    details = metric.details()
    assert (details["warmup"], details["iters"]) == (3, 20)
    assert len(method.seen) == 23 and set(method.seen) == {(3, 10, 12)}
    assert details["dtype"] == "float32"


def test_latency_without_bind_or_sample_is_a_usage_error():
    metric = harness.create_metric("latency")
    with pytest.raises(UsageError, match="bind_model"):
        metric.update([None], [rain_sample()])
    metric.bind_model(loaded(TinyMethod()), DERAINING, "cpu")
    with pytest.raises(UsageError, match="no sample"):
        metric.compute()
    with pytest.raises(UsageError, match="warmup"):
        harness.create_metric("latency", warmup=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_latency_on_cuda_uses_events_and_names_the_gpu():
    method = TinyMethod()
    method.load(None, "cuda")

    def predict(samples):
        return [method._model(s["rainy"].cuda()[None])[0].cpu() for s in samples]

    method.predict = predict
    metric = harness.create_metric("latency", warmup=2, iters=5)
    metric.bind_model(method, DERAINING, "cuda")
    metric.update([None], [rain_sample()])
    details = metric.details()
    assert details["timer"] == "cuda-event" and len(details["samples_ms"]) == 5
    assert details["device"]["name"] == torch.cuda.get_device_name()
    assert all(t > 0 for t in details["samples_ms"])
