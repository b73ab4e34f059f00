"""`latency`, `params`, `macs`: what a method costs, measured on the loaded model itself.

These metrics have no per-sample values. Each uses (at most) the first sample it is given, so the
numbers depend on the model and the input shape only; the shape is a parameter and recorded.
Latency follows the rules in the metric-conventions notes: batch 1, a fixed input shape, warm-up
iterations discarded, CUDA events (or synchronised wall clock) on GPU, percentiles from the raw
per-iteration samples with an explicit numpy percentile method. On CPU it measures CPU latency and
records the CPU model and thread count instead of a GPU name.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from harness import Method, Metric, Option, Sample, Task, UsageError, count_parameters, hookimpl
from harness.provenance import cpu_name

PERCENTILE_METHODS = ("linear", "lower", "higher", "nearest", "midpoint", "inverted_cdf", "closest_observation")
TIMERS = ("auto", "cuda-event", "wallclock")
DEFAULT_ITERATIONS = {"cpu": (3, 20), "cuda": (50, 200)}
"""(warm-up, timed) iterations when not given: modest on CPU, MLPerf-like orders on GPU."""


# -- shared: the fixed-shape input ------------------------------------------------------------------
def parse_shape(value: Any, owner: str) -> tuple[int, int] | None:
    """``()``/``""`` → None (use the sample's own shape); ``"321,481"`` or ``(321, 481)`` → (H, W)."""
    if value in (None, "", ()):
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        shape = tuple(int(str(part).strip()) for part in parts)
    except ValueError:
        shape = ()
    if len(shape) != 2 or min(shape) < 1:
        raise UsageError(f"{owner}: option 'shape' expects H,W (two positive integers, e.g. 321,481); got {value!r}")
    return shape  # type: ignore[return-value]


def fixed_shape_view(sample: Sample, task: Task, shape: tuple[int, int] | None) -> Sample:
    """The method's view of ``sample`` with every (C,H,W) input of the image's size resized to ``shape``.

    Masks (one channel) are resized with nearest neighbours so they stay binary, images bilinearly.
    Non-image inputs (keypoints, sizes) pass unchanged: the networks' cost does not depend on them.
    """
    view = task.method_view(sample)
    if shape is None:
        return view
    images = [value for key, value in view.items() if key != "id" and _is_image(value)]
    if not images:
        raise UsageError(f"task {task.name!r} has no image input to resize; leave option 'shape' unset")
    size = tuple(images[0].shape[-2:])
    resized = dict(view)
    for key, value in view.items():
        if key != "id" and _is_image(value) and tuple(value.shape[-2:]) == size:
            mode = "nearest" if value.shape[0] == 1 else "bilinear"
            extra = {} if mode == "nearest" else {"align_corners": False}
            resized[key] = F.interpolate(value[None].float(), size=shape, mode=mode, **extra)[0].to(value.dtype)
    return resized


def _is_image(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == 3 and value.is_floating_point()


def input_shapes(view: Sample) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in view.items() if isinstance(value, torch.Tensor)}


def _require_model(method: Method, metric: str) -> torch.nn.Module:
    model = method.model
    if not isinstance(model, torch.nn.Module):
        raise UsageError(
            f"metric {metric!r} needs a network, but method {method.name!r} is model-free "
            f"(it has no loaded torch.nn.Module); drop {metric!r} for this method"
        )
    return model


# -- macs -------------------------------------------------------------------------------------------
def count_macs(predict: Callable[[], Any]) -> dict[str, Any]:
    """Multiply–accumulates of one call of ``predict``, from torch's FlopCounterMode (MACs = FLOPs / 2).

    Only the operators FlopCounterMode knows (convolutions, matrix products, attention) are counted;
    element-wise operations (activations, normalisation, additions) are not, as in the usual tables.
    """
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        predict()
    flops = counter.get_total_flops()
    by_op = {str(op): int(n) / 2 for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return {"macs": flops / 2, "flops": int(flops), "macs_by_operator": by_op}


# -- latency ----------------------------------------------------------------------------------------
def measure_latency(
    run: Callable[[], Any], *, device: str, warmup: int, iters: int, timer: str = "auto"
) -> list[float]:
    """Per-call latency of ``run`` in milliseconds, after ``warmup`` discarded calls, one call at a time.

    On CUDA the default timer brackets each call with CUDA events on the current stream; ``wallclock``
    synchronises the device before and after and uses ``time.perf_counter``. On CPU it is always the
    wall clock.
    """
    cuda = torch.device(device).type == "cuda"
    timer = resolve_timer(timer, device)
    with torch.inference_mode():
        for _ in range(warmup):
            run()
        samples: list[float] = []
        for _ in range(iters):
            if cuda:
                torch.cuda.synchronize(device)
            if timer == "cuda-event":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run()
                end.record()
                end.synchronize()
                samples.append(float(start.elapsed_time(end)))
            else:
                began = time.perf_counter()
                run()
                if cuda:
                    torch.cuda.synchronize(device)
                samples.append((time.perf_counter() - began) * 1e3)
    return samples


def resolve_timer(timer: str, device: str) -> str:
    """``auto`` → CUDA events on a CUDA device, the wall clock elsewhere."""
    cuda = torch.device(device).type == "cuda"
    if timer == "auto":
        return "cuda-event" if cuda else "wallclock"
    if timer == "cuda-event" and not cuda:
        raise UsageError(f"latency: timer 'cuda-event' needs a CUDA device, got {device!r}")
    return timer


def latency_stats(samples_ms: list[float], percentile_method: str = "linear") -> dict[str, float]:
    """Summary of raw latencies; percentiles with numpy's ``method`` so the definition is explicit."""
    data = np.asarray(samples_ms, dtype=np.float64)
    p = {q: float(np.percentile(data, q, method=percentile_method)) for q in (25, 50, 75, 90, 95, 99)}
    mean = float(data.mean())
    return {
        "median": p[50],
        "p90": p[90],
        "p95": p[95],
        "p99": p[99],
        "mean": mean,
        "min": float(data.min()),
        "max": float(data.max()),
        "std": float(data.std()),
        "iqr": p[75] - p[25],
        "n": int(data.size),
        "throughput_per_s": 1e3 / mean,
    }


def describe_device(device: str) -> dict[str, Any]:
    """What the numbers were measured on: GPU name and library versions, or CPU model and threads."""
    info: dict[str, Any] = {"device": device, "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if torch.device(device).type == "cuda":
        index = torch.device(device).index
        index = torch.cuda.current_device() if index is None else index
        properties = torch.cuda.get_device_properties(index)
        info.update(
            name=properties.name,
            capability=f"{properties.major}.{properties.minor}",
            memory_bytes=properties.total_memory,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
        )
    else:
        info.update(device="cpu", name=cpu_name(), machine=platform.machine(), measures="CPU latency")
    return info


def _model_dtype(method: Method) -> str:
    model = method.model
    if isinstance(model, torch.nn.Module):
        parameter = next(model.parameters(), None)
        if parameter is not None:
            return str(parameter.dtype).removeprefix("torch.")
    return "n/a (model-free)"


# -- the metric plugins -----------------------------------------------------------------------------
SHAPE_OPTION = Option(
    "shape",
    (),
    "fixed input size H,W (e.g. 321,481); empty: the first sample's own size",
    type=tuple,
)


class _ModelCost(Metric):
    """Shared plumbing: bound method and task, the first sample's fixed-shape view, no per-sample values."""

    needs_model = True
    needs_target = False
    higher_is_better = False
    outputs = frozenset({"image", "embedding"})
    version = "1"
    requires_network: ClassVar[bool] = True
    """False where a model-free method can still be measured (latency of its predict)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.shape = parse_shape(self.config.get("shape"), self.name)
        self._method: Method | None = None
        self._task: Task | None = None
        self._device = "cpu"
        self._result: dict[str, Any] | None = None

    def reset(self) -> None:
        self._result = None

    def bind_model(self, method: Method, task: Task, device: str) -> None:
        if self.requires_network:
            _require_model(method, self.name)
        self._method, self._task, self._device = method, task, device

    def _bound(self) -> tuple[Method, Task]:
        if self._method is None or self._task is None:
            raise UsageError(f"metric {self.name!r} measures a model: call bind_model(method, task, device) first")
        return self._method, self._task

    def update(self, predictions: list[Any], samples: list[Sample]) -> None:
        if self._result is None and samples:
            method, task = self._bound()
            view = fixed_shape_view(samples[0], task, self.shape)
            self._result = {"sample": samples[0]["id"], "input_shapes": input_shapes(view), **self._measure(method, view)}

    def _measure(self, method: Method, view: Sample) -> dict[str, Any]:
        raise NotImplementedError

    def _done(self) -> dict[str, Any]:
        if self._result is None:
            raise UsageError(f"metric {self.name!r}: no sample was given to measure the model on")
        return self._result

    def details(self) -> dict[str, Any]:
        return dict(self._result or {})


class Latency(_ModelCost):
    """Batch-1 latency of ``method.predict`` on one sample at a fixed input shape."""

    name = "latency"
    requires_network = False
    description = "Batch-1 inference latency of method.predict (median/p90/p99/mean/min ms; throughput in details)."
    options = (
        SHAPE_OPTION,
        Option("warmup", None, "discarded warm-up calls (default: 3 on CPU, 50 on CUDA)", type=int),
        Option("iters", None, "timed calls (default: 20 on CPU, 200 on CUDA)", type=int),
        Option("timer", "auto", "auto: CUDA events on GPU, wall clock on CPU; wallclock: synchronise + perf_counter", choices=TIMERS),
        Option("percentile_method", "linear", "numpy.percentile method for median/p90/p99", choices=PERCENTILE_METHODS),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        warmup, iters = self.config["warmup"], self.config["iters"]
        if (warmup is not None and warmup < 0) or (iters is not None and iters < 1):
            raise UsageError(f"latency: need warmup >= 0 and iters >= 1; got warmup={warmup}, iters={iters}")

    def _iterations(self) -> tuple[int, int]:
        warmup, iters = DEFAULT_ITERATIONS["cuda" if torch.device(self._device).type == "cuda" else "cpu"]
        return (
            warmup if self.config["warmup"] is None else self.config["warmup"],
            iters if self.config["iters"] is None else self.config["iters"],
        )

    def _measure(self, method: Method, view: Sample) -> dict[str, Any]:
        warmup, iters = self._iterations()
        timer = resolve_timer(self.config["timer"], self._device)
        samples = measure_latency(
            lambda: method.predict([view]), device=self._device, warmup=warmup, iters=iters, timer=timer
        )
        return {
            "device": describe_device(self._device),
            "dtype": _model_dtype(method),
            "batch_size": 1,
            "warmup": warmup,
            "iters": iters,
            "timer": timer,
            "percentile_method": self.config["percentile_method"],
            "stats_ms": latency_stats(samples, self.config["percentile_method"]),
            "samples_ms": samples,
        }

    def compute(self) -> dict[str, float]:
        stats = self._done()["stats_ms"]
        return {
            "latency-ms": stats["median"],
            "latency-p90-ms": stats["p90"],
            "latency-p99-ms": stats["p99"],
            "latency-mean-ms": stats["mean"],
            "latency-min-ms": stats["min"],
        }

    def convention(self) -> dict[str, Any]:
        return {
            "implementation": f"harness_plugins.metrics.model_cost.latency/{self.version}",
            "timed_region": "method.predict([one sample]) as the runner calls it: host-to-device copy, "
            "pre/post-processing and device-to-host copy inside, under torch.inference_mode",
            "batch_size": 1,
            "statistic": "median of per-call times (p90/p99 alongside); details: throughput_per_s = 1000 / mean ms "
            "at batch 1 (higher is better, so not a column of this lower-is-better metric)",
            "torch": torch.__version__,
        }


class Params(_ModelCost):
    """Number of parameters of the loaded network, each shared tensor counted once."""

    name = "params"
    description = "Parameter count of the method's network (shared weights counted once; all and trainable)."
    options = ()

    def bind_model(self, method: Method, task: Task, device: str) -> None:
        super().bind_model(method, task, device)
        counts = count_parameters(_require_model(method, self.name))
        self._result = {"params": counts.params, "params-trainable": counts.trainable, "tensors": counts.tensors,
                        "references": counts.references, "buffer-elements": counts.buffer_elements}

    def reset(self) -> None:
        """The count belongs to the bound model, not to the samples seen: nothing to forget."""

    def update(self, predictions: list[Any], samples: list[Sample]) -> None:
        return None

    def compute(self) -> dict[str, float]:
        result = self._done()
        return {"params": result["params"], "params-trainable": result["params-trainable"]}

    def convention(self) -> dict[str, Any]:
        return {
            "implementation": f"harness_plugins.metrics.model_cost.params/{self.version}",
            "counted": "every registered parameter of method.model, unique by tensor identity "
            "(weight sharing counts once); buffers excluded; unused registered parameters included",
        }


class Macs(_ModelCost):
    """Multiply–accumulates of one batch-1 prediction at the fixed input shape."""

    name = "macs"
    description = "Multiply-accumulates of one batch-1 method.predict at a fixed input shape (FlopCounterMode / 2)."
    options = (SHAPE_OPTION,)

    def _measure(self, method: Method, view: Sample) -> dict[str, Any]:
        return {"batch_size": 1, **count_macs(lambda: method.predict([view]))}

    def compute(self) -> dict[str, float]:
        return {"macs": self._done()["macs"]}

    def convention(self) -> dict[str, Any]:
        return {
            "implementation": f"harness_plugins.metrics.model_cost.macs/{self.version}",
            "counter": "torch.utils.flop_counter.FlopCounterMode (convolution, matmul, attention); MACs = FLOPs / 2",
            "torch": torch.__version__,
        }


@hookimpl
def harness_register_metrics(register: Callable[[type], None]) -> None:
    register(Latency)
    register(Params)
    register(Macs)
