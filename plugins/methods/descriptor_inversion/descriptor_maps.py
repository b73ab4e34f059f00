"""Dense maps from sparse SIFT keypoints: the input of the descriptor-inversion networks.

`descriptor_map` is Wu et al.'s F_d: the image is cut into ⌈H/d⌉ × ⌈W/d⌉ cells, each keypoint's
descriptor goes to the cell (⌊y/d⌋, ⌊x/d⌋), cells without keypoints stay zero. The paper places
"additional descriptors in the adjacent empty cells" without saying which; here, keypoints are taken
in the sample's order (OpenCV's), and a keypoint whose cell is taken goes to the first empty cell of
its 8-neighbourhood in row-major order (dy, dx) = (-1,-1), (-1,0), (-1,1), (0,-1), (0,1), (1,-1),
(1,0), (1,1), inside the map; when none is empty it is dropped (as the authors' later SLI code
does) and counted in the returned statistics.

`sparse_sift_map` is Dosovitskiy & Brox's W/d × H/d × (D+5) map: per cell the first keypoint's
descriptor, its position inside the cell (x, y in [0, 1)), log2 of its scale, the cosine and sine
of its orientation (the 5 extra channels are harness-defined: the paper lists "position, scale,
orientation"); further keypoints in an occupied cell are dropped.

Descriptors are divided by 512, which undoes OpenCV's integer scaling and gives SIFT's unit-length
(0.2-clipped) vector.
"""

from __future__ import annotations

import math

import torch

NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
DESCRIPTOR_SCALE = 512.0


def map_shape(size: tuple[int, int], cell: int) -> tuple[int, int]:
    return math.ceil(size[0] / cell), math.ceil(size[1] / cell)


def place(keypoints: torch.Tensor, size: tuple[int, int], cell: int, adjacent: bool = True) -> tuple[list[tuple[int, int, int]], int]:
    """(keypoint index, row, column) of every placed keypoint and the number dropped."""
    rows, cols = map_shape(size, cell)
    taken = torch.zeros(rows, cols, dtype=torch.bool)
    placed, dropped = [], 0
    for index, (x, y) in enumerate(keypoints[:, :2].tolist()):
        row = min(max(int(y // cell), 0), rows - 1)
        col = min(max(int(x // cell), 0), cols - 1)
        if taken[row, col]:
            spot = None
            if adjacent:
                for dy, dx in NEIGHBOURS:
                    r, c = row + dy, col + dx
                    if 0 <= r < rows and 0 <= c < cols and not taken[r, c]:
                        spot = (r, c)
                        break
            if spot is None:
                dropped += 1
                continue
            row, col = spot
        taken[row, col] = True
        placed.append((index, row, col))
    return placed, dropped


def descriptor_map(keypoints: torch.Tensor, descriptors: torch.Tensor, size: tuple[int, int], cell: int) -> tuple[torch.Tensor, int]:
    """Wu et al.'s F_d as a (D, ⌈H/d⌉, ⌈W/d⌉) float tensor, and the number of dropped keypoints."""
    rows, cols = map_shape(size, cell)
    out = torch.zeros(descriptors.shape[1] if descriptors.dim() == 2 else 128, rows, cols)
    placed, dropped = place(keypoints, size, cell)
    if placed:
        index = torch.tensor([p[0] for p in placed])
        r = torch.tensor([p[1] for p in placed])
        c = torch.tensor([p[2] for p in placed])
        out[:, r, c] = descriptors[index].float().T / DESCRIPTOR_SCALE
    return out, dropped


def sparse_sift_map(keypoints: torch.Tensor, descriptors: torch.Tensor, size: tuple[int, int], cell: int) -> torch.Tensor:
    """Dosovitskiy & Brox's (D+5, ⌈H/d⌉, ⌈W/d⌉) sparse SIFT map (one keypoint per cell)."""
    rows, cols = map_shape(size, cell)
    depth = descriptors.shape[1]
    out = torch.zeros(depth + 5, rows, cols)
    placed, _ = place(keypoints, size, cell, adjacent=False)
    for index, row, col in placed:
        x, y, scale, angle = keypoints[index].tolist()
        theta = math.radians(angle)
        out[:depth, row, col] = descriptors[index].float() / DESCRIPTOR_SCALE
        out[depth:, row, col] = torch.tensor(
            [x / cell - col, y / cell - row, math.log2(max(scale, 1e-6)), math.cos(theta), math.sin(theta)]
        )
    return out
