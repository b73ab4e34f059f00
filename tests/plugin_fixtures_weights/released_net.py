"""A third-party method whose authors released weights in a format of their own (a ``.npz`` holding the
1×1 convolution as an (in, out) matrix ``W`` and a bias ``b``), to test `harness weights import` and
``--checkpoint FILE.npz`` through the public API only; and one whose release the harness cannot read."""

from __future__ import annotations

import numpy as np
import torch

from harness import DataError, Method, OfficialWeights, hookimpl


class ReleasedNet(Method):
    name = "released-net"
    tasks = frozenset({"deraining"})
    needs_checkpoint = True
    official_weights = OfficialWeights(format="NumPy .npz of W (in, out) and b", source="example.org/released-net",
                                       suffixes=(".npz",))

    def build(self):
        return torch.nn.Conv2d(3, 3, 1)

    def convert_official(self, path):
        arrays = np.load(path)
        if "W" not in arrays:
            raise DataError(f"{path}: no array W")
        return {"weight": torch.from_numpy(arrays["W"].T.copy())[:, :, None, None], "bias": torch.from_numpy(arrays["b"])}

    def predict(self, samples):
        with torch.no_grad():
            return [self._model(s["rainy"][None])[0] for s in samples]


class FrameworkOnly(ReleasedNet):
    name = "framework-only"
    official_weights = OfficialWeights(format="FrameworkX checkpoint", source="example.org/framework-only",
                                       route="load it in FrameworkX and save the variables as .npz")


@hookimpl
def harness_register_methods(register):
    register(ReleasedNet)
    register(FrameworkOnly)
