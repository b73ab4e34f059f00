"""The Inception-v3 of the FID/IS protocols (the TF "2015-12-05" graph) and its input preprocessing.

The network is the TensorFlow graph that TTUR (FID) and improved-gan (IS) run, as ported to PyTorch
by pytorch-fid and torch-fidelity. It differs from torchvision's Inception-v3 in ways that change
every feature (pytorch-fid#11): the average pools of the A, C and first E blocks ignore the zero
padding (TF's ``AVG_POOL`` with ``SAME`` padding), the last E block pools with a *max* pool, and the
classifier has 1008 classes. Parameter names are those of both ports' weight files
(``Conv2d_1a_3x3.conv.weight`` ... ``Mixed_7c.branch_pool.bn.running_var``, ``fc.weight``), so either
file loads strictly.

Two input pipelines (``PROTOCOLS``) reproduce the two libraries: pytorch-fid scales uint8 to [0, 1],
resizes with PyTorch's bilinear (half-pixel centres) and maps to [-1, 1]; torch-fidelity resizes the
raw [0, 255] values with TF1's bilinear (no half-pixel centres) and maps with (x - 128) / 128.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.checkpoints import load_into

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008

# A branch step is a conv name, a pool ("avg" / "max", stride), or a tuple of conv names applied
# to the same input and concatenated (the fan-out at the end of the E-block branches).
Step = str | tuple[str, int] | tuple[str, ...]


class ConvBN(nn.Module):
    """Convolution without bias, batch norm with TF's epsilon 1e-3, ReLU (TF's conv + BN unit)."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _pool(x: torch.Tensor, kind: str, stride: int) -> torch.Tensor:
    """3x3 pools as in the TF graph: stride 1 keeps the size (SAME padding, padding not averaged),
    stride 2 is VALID."""
    padding = 1 if stride == 1 else 0
    if kind == "avg":
        return F.avg_pool2d(x, 3, stride=stride, padding=padding, count_include_pad=False)
    return F.max_pool2d(x, 3, stride=stride, padding=padding)


class Mixed(nn.Module):
    """One Inception block: parallel branches of conv units and pools, concatenated on channels."""

    def __init__(self, convs: dict[str, ConvBN], branches: Sequence[Sequence[Step]]) -> None:
        super().__init__()
        for name, module in convs.items():
            self.add_module(name, module)
        self.branches = [list(branch) for branch in branches]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for branch in self.branches:
            y = x
            for step in branch:
                if isinstance(step, str):
                    y = getattr(self, step)(y)
                elif isinstance(step[1], int):
                    y = _pool(y, step[0], step[1])
                else:
                    y = torch.cat([getattr(self, name)(y) for name in step], 1)
            outputs.append(y)
        return torch.cat(outputs, 1)


def _block_a(cin: int, pool_channels: int) -> Mixed:
    convs = {
        "branch1x1": ConvBN(cin, 64, 1),
        "branch5x5_1": ConvBN(cin, 48, 1),
        "branch5x5_2": ConvBN(48, 64, 5, padding=2),
        "branch3x3dbl_1": ConvBN(cin, 64, 1),
        "branch3x3dbl_2": ConvBN(64, 96, 3, padding=1),
        "branch3x3dbl_3": ConvBN(96, 96, 3, padding=1),
        "branch_pool": ConvBN(cin, pool_channels, 1),
    }
    return Mixed(convs, [
        ["branch1x1"],
        ["branch5x5_1", "branch5x5_2"],
        ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"],
        [("avg", 1), "branch_pool"],
    ])


def _block_b(cin: int) -> Mixed:
    convs = {
        "branch3x3": ConvBN(cin, 384, 3, stride=2),
        "branch3x3dbl_1": ConvBN(cin, 64, 1),
        "branch3x3dbl_2": ConvBN(64, 96, 3, padding=1),
        "branch3x3dbl_3": ConvBN(96, 96, 3, stride=2),
    }
    return Mixed(convs, [
        ["branch3x3"],
        ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"],
        [("max", 2)],
    ])


def _block_c(cin: int, c7: int) -> Mixed:
    row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding) of the factorised 7x7
    convs = {
        "branch1x1": ConvBN(cin, 192, 1),
        "branch7x7_1": ConvBN(cin, c7, 1),
        "branch7x7_2": ConvBN(c7, c7, row[0], padding=row[1]),
        "branch7x7_3": ConvBN(c7, 192, col[0], padding=col[1]),
        "branch7x7dbl_1": ConvBN(cin, c7, 1),
        "branch7x7dbl_2": ConvBN(c7, c7, col[0], padding=col[1]),
        "branch7x7dbl_3": ConvBN(c7, c7, row[0], padding=row[1]),
        "branch7x7dbl_4": ConvBN(c7, c7, col[0], padding=col[1]),
        "branch7x7dbl_5": ConvBN(c7, 192, row[0], padding=row[1]),
        "branch_pool": ConvBN(cin, 192, 1),
    }
    return Mixed(convs, [
        ["branch1x1"],
        ["branch7x7_1", "branch7x7_2", "branch7x7_3"],
        ["branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"],
        [("avg", 1), "branch_pool"],
    ])


def _block_d(cin: int) -> Mixed:
    convs = {
        "branch3x3_1": ConvBN(cin, 192, 1),
        "branch3x3_2": ConvBN(192, 320, 3, stride=2),
        "branch7x7x3_1": ConvBN(cin, 192, 1),
        "branch7x7x3_2": ConvBN(192, 192, (1, 7), padding=(0, 3)),
        "branch7x7x3_3": ConvBN(192, 192, (7, 1), padding=(3, 0)),
        "branch7x7x3_4": ConvBN(192, 192, 3, stride=2),
    }
    return Mixed(convs, [
        ["branch3x3_1", "branch3x3_2"],
        ["branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"],
        [("max", 2)],
    ])


def _block_e(cin: int, pool: str) -> Mixed:
    convs = {
        "branch1x1": ConvBN(cin, 320, 1),
        "branch3x3_1": ConvBN(cin, 384, 1),
        "branch3x3_2a": ConvBN(384, 384, (1, 3), padding=(0, 1)),
        "branch3x3_2b": ConvBN(384, 384, (3, 1), padding=(1, 0)),
        "branch3x3dbl_1": ConvBN(cin, 448, 1),
        "branch3x3dbl_2": ConvBN(448, 384, 3, padding=1),
        "branch3x3dbl_3a": ConvBN(384, 384, (1, 3), padding=(0, 1)),
        "branch3x3dbl_3b": ConvBN(384, 384, (3, 1), padding=(1, 0)),
        "branch_pool": ConvBN(cin, 192, 1),
    }
    return Mixed(convs, [
        ["branch1x1"],
        ["branch3x3_1", ("branch3x3_2a", "branch3x3_2b")],
        ["branch3x3dbl_1", "branch3x3dbl_2", ("branch3x3dbl_3a", "branch3x3dbl_3b")],
        [(pool, 1), "branch_pool"],
    ])


class FIDInceptionV3(nn.Module):
    """Inception-v3 "2015-12-05" up to pool3, plus the 1008-class ``fc`` whose weight gives IS logits.

    ``forward`` takes normalised (N, 3, 299, 299) input and returns the (N, 2048) pool3 features.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = _block_a(192, 32)
        self.Mixed_5c = _block_a(256, 64)
        self.Mixed_5d = _block_a(288, 64)
        self.Mixed_6a = _block_b(288)
        self.Mixed_6b = _block_c(768, 128)
        self.Mixed_6c = _block_c(768, 160)
        self.Mixed_6d = _block_c(768, 160)
        self.Mixed_6e = _block_c(768, 192)
        self.Mixed_7a = _block_d(768)
        self.Mixed_7b = _block_e(1280, "avg")
        self.Mixed_7c = _block_e(2048, "max")  # the TF graph's quirk: max pool in the last block
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def load_inception(path: Path, device: str) -> FIDInceptionV3:
    """The network with the weights of ``path`` (strict; `DataError` naming the file otherwise), in eval mode."""
    model = FIDInceptionV3()
    load_into(model, path)
    return model.eval().requires_grad_(False).to(device)


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1 ``resize_bilinear`` (align_corners=False, no half-pixel centres) of (N, C, H, W) float32.

    Output pixel i samples the input at i * (in / out), all in float32 as TF computes it: the
    neighbours are floor() and floor() + 1 (clamped to the border), blended first along x, then y.
    """
    def taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = torch.tensor(n_in / n_out, dtype=torch.float32)
        position = torch.arange(n_out, dtype=torch.float32) * scale
        low = position.floor()
        high = (low + 1).clamp(max=n_in - 1)
        return low.long().to(x.device), high.long().to(x.device), (position - low).to(x.device)

    y0, y1, wy = taps(x.shape[-2], size[0])
    x0, x1, wx = taps(x.shape[-1], size[1])
    top, bottom = x[..., y0, :], x[..., y1, :]
    top = top[..., x0] + (top[..., x1] - top[..., x0]) * wx
    bottom = bottom[..., x0] + (bottom[..., x1] - bottom[..., x0]) * wx
    return top + (bottom - top) * wy[:, None]


def _prepare_pytorch_fid(image: torch.Tensor) -> torch.Tensor:
    x = image.float().div(255.0)  # torchvision ToTensor on the PNG pixels
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return 2 * x - 1


def _prepare_torch_fidelity(image: torch.Tensor) -> torch.Tensor:
    x = resize_bilinear_tf1(image.float(), (INPUT_SIZE, INPUT_SIZE))
    return (x - 128) / 128


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One library's Inception pipeline: its weights file and how a uint8 image becomes network input."""

    name: str
    weights_file: str
    weights_url: str
    resize: str
    normalisation: str
    prepare: Callable[[torch.Tensor], torch.Tensor]
    """uint8 (N, 3, H, W) → float32 (N, 3, 299, 299) network input."""


PROTOCOLS = {
    "pytorch-fid": Protocol(
        name="pytorch-fid",
        weights_file="pt_inception-2015-12-05-6726825d.pth",
        weights_url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth",
        resize="torch bilinear to 299x299, align_corners=False, no antialias (pytorch-fid)",
        normalisation="x / 255 * 2 - 1",
        prepare=_prepare_pytorch_fid,
    ),
    "torch-fidelity": Protocol(
        name="torch-fidelity",
        weights_file="weights-inception-2015-12-05-6726825d.pth",
        weights_url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth",
        resize="TF1 resize_bilinear to 299x299, align_corners=False, no half-pixel centres (torch-fidelity)",
        normalisation="(x - 128) / 128",
        prepare=_prepare_torch_fidelity,
    ),
}


def network_input(images: Sequence[np.ndarray], protocol: Protocol) -> torch.Tensor:
    """uint8 (H, W, 3) images, each resized on its own (sizes may differ) → one (N, 3, 299, 299) batch."""
    return torch.cat([
        protocol.prepare(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None])
        for image in images
    ])
