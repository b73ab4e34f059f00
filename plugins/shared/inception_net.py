"""The Inception-v3 "2015-12-05" network of the FID/IS protocols, as the libraries defining them ship it.

The network is the TensorFlow graph TTUR (FID) and improved-gan (IS) run; it differs from
torchvision's Inception-v3 in ways that change every feature (pytorch-fid#11). The harness does not
port it again: each protocol runs its library's own module, input pipeline included.

* ``pytorch-fid``: ``pytorch_fid.inception.InceptionV3`` (pool3 block) on uint8 / 255, which resizes
  with PyTorch's bilinear (half-pixel centres) and maps to [-1, 1] itself.
* ``torch-fidelity``: ``torch_fidelity``'s ``FeatureExtractorInceptionV3`` on the uint8 images, which
  resizes with TF1's bilinear (no half-pixel centres) and maps with (x - 128) / 128 itself. An optional
  dependency: ``pip install "harness[fidelity]"``.

What the harness keeps, and why:

* **Weights from a local file, never a download or a pickle.** Both constructors fetch their weights
  through ``load_state_dict_from_url`` (downloading on a miss; torch-fidelity unpickles an explicit
  path with ``weights_only=False``). The harness loads the file itself, tensors only
  (`harness.checkpoints.load_state_dict`), and answers the constructor's one lookup with that state
  dict; a constructor that stops asking is reported, not silently allowed to download.
* **Batches of mixed sizes.** Both modules resize a batch tensor, so a batch is split into groups of
  one image size (a reference folder's images may differ) and the rows put back in order.
* **IS logits from ``fc``.** pytorch-fid's module drops the classifier; the 1008-class ``fc`` of the
  same weights file is kept beside it (IS logits are pool3 · fc.weightᵀ, no bias).

Measured against the port this module replaced (291 lines; a randomly initialised network saved as
both weight files, 8 uint8 images of three sizes, CPU float32, one thread): both libraries' modules give
bit-identical pool3 features and fc weights, in the same time (1.7–2.7 s either way on a shared 2-core
machine), so nothing of the port is kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from harness import DataError, UsageError
from harness.checkpoints import load_state_dict

FEATURE_DIM = 2048
NUM_CLASSES = 1008


class InceptionNetwork(nn.Module):
    """A library's Inception feature module plus the classifier of the same weights.

    ``forward`` takes uint8 (N, 3, H, W) images of one size and returns float32 (N, 2048) pool3 features.
    """

    def __init__(self, features: nn.Module, fc: nn.Linear, to_input: Callable[[torch.Tensor], torch.Tensor],
                 from_output: Callable[[Any], torch.Tensor]) -> None:
        super().__init__()
        self.features = features
        self.fc = fc
        self._to_input, self._from_output = to_input, from_output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._from_output(self.features(self._to_input(images))).float()


_LOOKUP_LOCK = threading.Lock()


@contextlib.contextmanager
def _answer_weight_lookup(module: ModuleType, state: dict[str, torch.Tensor], library: str) -> Iterator[None]:
    """While a library constructs its network, its ``load_state_dict_from_url`` returns ``state``."""
    asked: list[str] = []

    def lookup(url: str, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        asked.append(url)
        return state

    with _LOOKUP_LOCK:
        original = module.load_state_dict_from_url
        module.load_state_dict_from_url = lookup
        try:
            yield
        finally:
            module.load_state_dict_from_url = original
    if not asked:
        raise RuntimeError(f"{library} built its Inception without asking for weights; the harness's loader "
                           "needs updating for this version")


def _classifier(state: dict[str, torch.Tensor]) -> nn.Linear:
    fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)
    fc.load_state_dict({"weight": state["fc.weight"], "bias": state["fc.bias"]})
    return fc


def _build_pytorch_fid(library: ModuleType, state: dict[str, torch.Tensor]) -> InceptionNetwork:
    pool3 = library.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]
    with _answer_weight_lookup(library, state, "pytorch-fid"):
        features = library.InceptionV3([pool3], resize_input=True, normalize_input=True)
    return InceptionNetwork(features, _classifier(state), lambda x: x.float().div(255.0),  # ToTensor of the PNG
                            lambda outputs: outputs[0].flatten(1))


def _build_torch_fidelity(library: ModuleType, state: dict[str, torch.Tensor]) -> InceptionNetwork:
    with _answer_weight_lookup(library, state, "torch-fidelity"):
        features = library.FeatureExtractorInceptionV3("inception-v3-compat", [str(FEATURE_DIM)])
    return InceptionNetwork(features, features.fc, lambda x: x, lambda outputs: outputs[0])


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One library's Inception pipeline: its weights file, its module and how that module treats input."""

    name: str
    library: str
    """The module holding the network (and its ``load_state_dict_from_url``)."""
    package: str
    """The pip package, for the error when it is missing."""
    weights_file: str
    weights_url: str
    network: str
    resize: str
    normalisation: str
    build: Callable[[ModuleType, dict[str, torch.Tensor]], InceptionNetwork]

    def import_library(self) -> ModuleType:
        """The library's module, or a `UsageError` saying how to install it."""
        try:
            return importlib.import_module(self.library)
        except ImportError as exc:
            extra = ' (pip install "harness[fidelity]")' if self.package == "torch-fidelity" else ""
            raise UsageError(f"the {self.name} Inception protocol needs the {self.package} package{extra}: {exc}") from None


PROTOCOLS = {
    "pytorch-fid": Protocol(
        name="pytorch-fid",
        library="pytorch_fid.inception",
        package="pytorch-fid",
        weights_file="pt_inception-2015-12-05-6726825d.pth",
        weights_url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth",
        network="pytorch_fid.inception.InceptionV3 (fid_inception_v3: TF graph port, count_include_pad=False "
                "avg pools, max pool in Mixed_7c), pool3 block; 1008-class fc from the same file",
        resize="torch bilinear to 299x299, align_corners=False, no antialias (pytorch-fid)",
        normalisation="x / 255 * 2 - 1",
        build=_build_pytorch_fid,
    ),
    "torch-fidelity": Protocol(
        name="torch-fidelity",
        library="torch_fidelity.feature_extractor_inceptionv3",
        package="torch-fidelity",
        weights_file="weights-inception-2015-12-05-6726825d.pth",
        weights_url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth",
        network="torch_fidelity FeatureExtractorInceptionV3 (inception-v3-compat), feature '2048' and its fc",
        resize="TF1 resize_bilinear to 299x299, align_corners=False, no half-pixel centres (torch-fidelity)",
        normalisation="(x - 128) / 128",
        build=_build_torch_fidelity,
    ),
}


def load_network(protocol: Protocol, path: Path, device: str) -> InceptionNetwork:
    """``protocol``'s network with the weights of ``path`` (strict; `DataError` naming the file otherwise)."""
    library = protocol.import_library()
    state = {key.removeprefix("module."): value for key, value in load_state_dict(path).items()}
    try:
        network = protocol.build(library, state)
    except (RuntimeError, KeyError) as exc:
        first = " ".join(str(exc).splitlines()[:4])
        raise DataError(f"checkpoint {path} does not fit the {protocol.name} Inception network: {first}") from None
    return network.eval().requires_grad_(False).to(device)


def pool3_features(network: InceptionNetwork, images: Sequence[np.ndarray], device: str) -> torch.Tensor:
    """uint8 (H, W, 3) images → float32 (N, 2048) features on the CPU, one forward per image size."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(image.shape, []).append(index)
    out = torch.empty((len(images), FEATURE_DIM), dtype=torch.float32)
    for indices in groups.values():
        batch = torch.from_numpy(np.stack([images[i] for i in indices])).permute(0, 3, 1, 2).contiguous()
        out[indices] = network(batch.to(device)).cpu()
    return out
