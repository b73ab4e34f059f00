"""Released Torch7 networks (``torch.save`` of a whole ``nn`` module, ``.t7``) as PyTorch state dicts.

Lua Torch serialised the module objects themselves, not a state dict: a tree of containers (``nn.Sequential``,
``nn.gModule``…) whose ``modules`` lists hold the layers with their fields (``weight``, ``bias``,
``running_mean``…). `torch7_state_dict` reads such a file with the ``torchfile`` package (the
``official`` extra), walks the tree depth-first in order and pairs its layers one by one with the leaf
modules of a PyTorch network, in their registration order (which must be the forward order): each pair
must be of corresponding kinds (convolution, full convolution, batch norm, activation…) and of equal shapes,
or a `DataError` names the file, both layers and the first difference.

Layouts: ``nn.SpatialConvolution`` stores (nOutputPlane, nInputPlane, kH, kW) like ``nn.Conv2d`` (files of
2015 and before, and ``nn.SpatialConvolutionMM``, store it flattened as (nOut, nIn·kH·kW));
``nn.SpatialFullConvolution`` stores (nInputPlane, nOutputPlane, kH, kW) like ``nn.ConvTranspose2d``; batch
norm keeps ``running_var``, or in files written before its version 2 ``running_std`` = 1/√(var + eps). The
``cudnn.*`` and ``fbnn.*`` twins of these layers hold the same fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness import DataError, UsageError

CONVOLUTIONS = {"nn.SpatialConvolution", "nn.SpatialConvolutionMM", "cudnn.SpatialConvolution"}
FULL_CONVOLUTIONS = {"nn.SpatialFullConvolution", "cudnn.SpatialFullConvolution"}
BATCH_NORMS = {"nn.SpatialBatchNormalization", "cudnn.SpatialBatchNormalization", "fbnn.SpatialBatchNormalization",
               "nn.BatchNormalization", "cudnn.BatchNormalization"}
LINEAR = {"nn.Linear"}
ACTIVATIONS: dict[type[nn.Module], set[str]] = {
    nn.ReLU: {"nn.ReLU", "cudnn.ReLU"},
    nn.LeakyReLU: {"nn.LeakyReLU"},
    nn.Tanh: {"nn.Tanh", "cudnn.Tanh"},
    nn.Sigmoid: {"nn.Sigmoid", "cudnn.Sigmoid"},
}
NO_OPS = {"nn.Identity", "nn.Copy", "nn.Contiguous"}
"""Layers that leave their input as it is: skipped on the file's side."""
CORRESPONDING: dict[type[nn.Module], set[str]] = {
    nn.Conv2d: CONVOLUTIONS, nn.ConvTranspose2d: FULL_CONVOLUTIONS, nn.BatchNorm2d: BATCH_NORMS,
    nn.BatchNorm1d: BATCH_NORMS, nn.Linear: LINEAR, **ACTIVATIONS,
}


@dataclasses.dataclass
class T7Layer:
    """One leaf module of a Torch7 file: its class, its place in the tree, its fields (str keys)."""

    kind: str
    where: str
    """Its position as Lua indexes it, e.g. ``1.11`` (the 11th module of the file's first container)."""
    fields: dict[str, Any]

    def tensor(self, name: str) -> np.ndarray | None:
        value = self.fields.get(name)
        if value is None or not isinstance(value, np.ndarray) or value.size == 0:
            return None
        return np.ascontiguousarray(value)

    def number(self, name: str, default: float | None = None) -> float | None:
        value = self.fields.get(name)
        return default if value is None or isinstance(value, (bytes, str, np.ndarray)) else float(value)

    def describe(self) -> str:
        fields = self.fields
        if self.kind in CONVOLUTIONS | FULL_CONVOLUTIONS:
            return (f"{self.kind}({fields.get('nInputPlane')} -> {fields.get('nOutputPlane')}, "
                    f"{fields.get('kW')}x{fields.get('kH')}) at module {self.where}")
        return f"{self.kind} at module {self.where}"


def read_t7(path: Path) -> Any:
    """The object a ``.t7`` file holds (``torchfile``: modules as objects with ``torch_typename()``)."""
    try:
        import torchfile
    except ImportError:
        raise UsageError("reading Torch7 .t7 weights needs the torchfile package: pip install 'harness[official]'"
                         ) from None
    try:
        return torchfile.load(str(path))
    except Exception as exc:  # noqa: BLE001 - truncated or foreign files fail in struct/numpy/torchfile alike
        raise DataError(f"{path}: not a readable Torch7 binary file ({type(exc).__name__}: {exc})") from None


def _name(value: Any) -> str | None:
    typename = getattr(value, "torch_typename", None)
    if not callable(typename):
        return None
    name = typename()
    return name.decode("latin-1") if isinstance(name, bytes) else str(name)


def _fields(value: Any) -> dict[str, Any]:
    raw = getattr(value, "_obj", None) or {}
    return {(key.decode("latin-1") if isinstance(key, bytes) else str(key)): item for key, item in raw.items()}


def t7_layers(root: Any, path: Path) -> list[T7Layer]:
    """The leaf modules of a Torch7 module tree, depth-first in order (containers: a ``modules`` list)."""
    if _name(root) is None:
        raise DataError(f"{path}: holds a {type(root).__name__}, not a Torch7 nn module (expected the saved network)")
    layers: list[T7Layer] = []

    def walk(module: Any, where: str) -> None:
        fields = _fields(module)
        children = fields.get("modules")
        if isinstance(children, dict):  # a table torchfile did not turn into a list (keys not 1..n)
            children = [children[key] for key in sorted(children)]
        if isinstance(children, list):
            for index, child in enumerate(children, start=1):
                walk(child, f"{where}.{index}" if where else str(index))
            return
        kind = _name(module) or type(module).__name__
        if kind not in NO_OPS:
            layers.append(T7Layer(kind, where or "(top)", fields))

    walk(root, "")
    return layers


def network_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """A PyTorch network's leaf modules in registration order, without the ones that compute nothing."""
    return [(name, module) for name, module in model.named_modules()
            if not any(True for _ in module.children()) and not isinstance(module, (nn.Identity, nn.Dropout))]


class Misfit(Exception):
    """One layer pair that does not correspond: the reason, without the layers' names."""


def _expect(found: Any, wanted: Any, what: str) -> None:
    if found != wanted:
        raise Misfit(f"{what} {found}, network {wanted}")


def _parameter(layer: T7Layer, name: str, shape: tuple[int, ...], reshape: bool = False) -> torch.Tensor:
    array = layer.tensor(name)
    if array is None:
        raise Misfit(f"no {name} (network {name} {shape})")
    if reshape and array.shape != shape and array.size == int(np.prod(shape)) and array.shape[0] == shape[0]:
        array = array.reshape(shape)  # flattened (nOut, nIn*kH*kW) convolution weights of older files
    _expect(tuple(array.shape), shape, name)
    return torch.from_numpy(array.astype(np.float32, copy=True))


def _bias(layer: T7Layer, target: nn.Module, state: dict[str, torch.Tensor], prefix: str) -> None:
    has = layer.tensor("bias") is not None
    if target.bias is None:
        if has:
            raise Misfit("a bias, the network's layer has none")
        return
    state[f"{prefix}bias"] = _parameter(layer, "bias", tuple(target.bias.shape))


def _convolution(layer: T7Layer, target: nn.Conv2d | nn.ConvTranspose2d, state: dict[str, torch.Tensor],
                 prefix: str) -> None:
    fields = layer.number
    _expect((fields("nInputPlane"), fields("nOutputPlane")), (float(target.in_channels), float(target.out_channels)),
            "planes (in, out)")
    geometry = ((fields("kH"), fields("kW")), (fields("dH", 1), fields("dW", 1)), (fields("padH", 0), fields("padW", 0)))
    wanted = tuple(tuple(float(v) for v in pair) for pair in (target.kernel_size, target.stride, target.padding))
    _expect(geometry, wanted, "kernel, stride, padding (H, W)")
    if isinstance(target, nn.ConvTranspose2d):
        _expect((fields("adjH", 0), fields("adjW", 0)), tuple(float(v) for v in target.output_padding), "adjH, adjW")
    state[f"{prefix}weight"] = _parameter(layer, "weight", tuple(target.weight.shape), reshape=isinstance(target, nn.Conv2d))
    _bias(layer, target, state, prefix)


def _batch_norm(layer: T7Layer, target: nn.BatchNorm1d | nn.BatchNorm2d, state: dict[str, torch.Tensor],
                prefix: str) -> None:
    shape = (target.num_features,)
    eps = layer.number("eps", 1e-5)
    mean = _parameter(layer, "running_mean", shape)
    if layer.tensor("running_var") is not None:
        var = _parameter(layer, "running_var", shape).double()
    elif layer.tensor("running_std") is not None:  # before nn's BatchNormalization version 2: 1/sqrt(var + eps)
        var = _parameter(layer, "running_std", shape).double().pow(-2) - eps
    else:
        raise Misfit("neither running_var nor running_std")
    # sqrt(var + eps) is what normalises: the same with the network's own eps
    state[f"{prefix}running_var"] = (var + eps - target.eps).float()
    state[f"{prefix}running_mean"] = mean
    if target.affine:
        state[f"{prefix}weight"] = _parameter(layer, "weight", shape)
        state[f"{prefix}bias"] = _parameter(layer, "bias", shape)
    elif layer.tensor("weight") is not None:
        raise Misfit("an affine weight, the network's batch norm has none")
    if target.num_batches_tracked is not None:
        state[f"{prefix}num_batches_tracked"] = torch.tensor(0, dtype=torch.long)


def _linear(layer: T7Layer, target: nn.Linear, state: dict[str, torch.Tensor], prefix: str) -> None:
    state[f"{prefix}weight"] = _parameter(layer, "weight", tuple(target.weight.shape))
    _bias(layer, target, state, prefix)


def _convert(layer: T7Layer, target: nn.Module, state: dict[str, torch.Tensor], prefix: str) -> None:
    kinds = next((names for cls, names in CORRESPONDING.items() if type(target) is cls), None)
    if kinds is None:
        raise Misfit(f"the network's {type(target).__name__} has no Torch7 counterpart known to the harness")
    if layer.kind not in kinds:
        raise Misfit(f"a {layer.kind}, the network has a {type(target).__name__}")
    if isinstance(target, (nn.Conv2d, nn.ConvTranspose2d)):
        _convolution(layer, target, state, prefix)
    elif isinstance(target, (nn.BatchNorm1d, nn.BatchNorm2d)):
        _batch_norm(layer, target, state, prefix)
    elif isinstance(target, nn.Linear):
        _linear(layer, target, state, prefix)
    elif isinstance(target, nn.LeakyReLU):
        _expect(layer.number("negval", 1 / 100), float(target.negative_slope), "negval")


def torch7_state_dict(path: Path, model: nn.Module,
                      hint: Callable[[list[T7Layer]], str] | None = None) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` from the Torch7 network saved in ``path``, layer by layer (see the module
    docstring). `DataError` names the first layer that does not fit, followed by ``hint(layers)`` (e.g. the
    options the file's network was built with) when it says something."""
    path = Path(path)
    layers = t7_layers(read_t7(path), path)
    targets = network_layers(model)
    state: dict[str, torch.Tensor] = {}

    def suffix() -> str:
        text = hint(layers) if hint else ""
        return f"; {text}" if text else ""

    for index, (layer, (name, target)) in enumerate(zip(layers, targets), start=1):
        try:
            _convert(layer, target, state, f"{name}." if name else "")
        except Misfit as misfit:
            raise DataError(f"{path}: layer {index}, {layer.describe()}, does not fit the network's {name} "
                            f"({target}): {misfit}{suffix()}") from None
    if len(layers) != len(targets):
        more, what = (layers[len(targets):], "the file has") if len(layers) > len(targets) else \
            (targets[len(layers):], "the network has")
        first = more[0].describe() if isinstance(more[0], T7Layer) else f"{more[0][0]} ({more[0][1]})"
        raise DataError(f"{path}: {len(layers)} layers in the file, {len(targets)} in the network; {what} "
                        f"{len(more)} more from layer {min(len(layers), len(targets)) + 1}, {first}{suffix()}")
    return state
