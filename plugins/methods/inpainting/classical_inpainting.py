"""Training-free inpainting baselines: `mean-fill`, `telea`, `navier-stokes` and `patchmatch`.

* ``mean-fill``: the hole takes the mean colour of the image's known pixels: the floor of every table.
* ``telea`` / ``navier-stokes``: OpenCV's ``cv2.inpaint`` (Telea 2004, fast marching; Bertalmio et al.
  2001, fluid dynamics) on the 8-bit image, radius ``radius``; the diffusion baselines.
* ``patchmatch``: an exemplar-based fill in the style of Wexler et al. (2007) with Barnes et al.'s
  PatchMatch (2009) nearest-neighbour search, coarse to fine. This is the stand-in for Photoshop's
  Content-Aware Fill (the thesis's "CAF" rows), which is built on PatchMatch but proprietary; numbers
  from it are labelled as a substitute, never as CAF.

PatchMatch details (all options, all recorded): ``patch``×``patch`` patches; a pyramid halving the image
until the hole's shorter bounding side is at most ``coarse`` pixels; the coarsest hole starts as the mean
fill; at each level ``em_iterations`` rounds of (``search_iterations`` of PatchMatch: parallel
propagation from the four neighbours and random search with halving radius, then voting: every hole
pixel becomes the mean of the pixels the overlapping patches' nearest neighbours put there). Source
patches lie wholly inside the image and outside the hole. Random draws come from ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness import DataError, Method, Option, Sample, UsageError, hookimpl
from harness.data import to_uint8

from .inpainting_common import composite, hole_of


class _ClassicalFill(Method):
    """A per-image fill of the hole; subclasses define `fill` on float (H, W, 3) arrays."""

    tasks = frozenset({"inpainting"})

    def fill(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, samples: list[Sample]) -> list[Any]:
        outputs = []
        for sample in samples:
            hole = hole_of(sample)
            masked = sample["masked"].float().cpu()
            filled = self.fill(masked.permute(1, 2, 0).numpy().astype(np.float64), hole[0].cpu().numpy())
            outputs.append(composite(torch.from_numpy(filled).permute(2, 0, 1).float(), masked, hole.cpu()))
        return outputs


def mean_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The hole set to the mean colour of the known pixels."""
    if hole.all():
        raise DataError("mean-fill: the hole covers the whole image; no known pixel to take a colour from")
    out = image.copy()
    out[hole] = image[~hole].mean(axis=0)
    return out


class MeanFill(_ClassicalFill):
    name = "mean-fill"
    description = "Fills the hole with the mean colour of the known pixels (the floor of every inpainting table)."

    def fill(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        return mean_fill(image, hole)


class _OpenCVInpaint(_ClassicalFill):
    flag_name: str
    options = (Option("radius", 3, "cv2.inpaint inpaintRadius: neighbourhood of each filled pixel (pixels)"),)

    def fill(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        import cv2

        flag = getattr(cv2, self.flag_name)
        levels = to_uint8(torch.from_numpy(image).permute(2, 0, 1))
        filled = cv2.inpaint(np.ascontiguousarray(levels), hole.astype(np.uint8) * 255, float(self.config["radius"]), flag)
        return filled.astype(np.float64) / 255.0


class Telea(_OpenCVInpaint):
    name = "telea"
    description = "OpenCV cv2.inpaint with INPAINT_TELEA (fast marching, Telea 2004): a diffusion baseline."
    paper = "A. Telea. An Image Inpainting Technique Based on the Fast Marching Method. J. Graphics Tools 9(1), 2004"
    flag_name = "INPAINT_TELEA"


class NavierStokes(_OpenCVInpaint):
    name = "navier-stokes"
    description = "OpenCV cv2.inpaint with INPAINT_NS (Bertalmio et al. 2001): a diffusion baseline."
    paper = "M. Bertalmio, A. L. Bertozzi, G. Sapiro. Navier-Stokes, Fluid Dynamics, and Image and Video Inpainting. CVPR 2001"
    flag_name = "INPAINT_NS"


# -- PatchMatch ---------------------------------------------------------------------------------------
def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (F.max_pool2d(t, 2 * radius + 1, 1, radius)[0, 0] > 0).numpy()


def patch_matrix(image: np.ndarray, r: int) -> torch.Tensor:
    """Every (2r+1)² patch of a float (H, W, 3) image as a row of a (H·W, 3·(2r+1)²) float32 matrix;
    patches reaching past the border read a reflected copy."""
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    padded = F.pad(t, (r, r, r, r), mode="reflect")
    return F.unfold(padded.float(), 2 * r + 1)[0].T.contiguous()


def patch_distance(patches: torch.Tensor, width: int, ty: np.ndarray, tx: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """SSD between the patches centred at targets (ty, tx) and sources (sy, sx)."""
    targets = patches[torch.from_numpy(ty * width + tx)]
    sources = patches[torch.from_numpy(sy * width + sx)]
    return (targets - sources).square_().sum(dim=1).numpy()


class PatchMatchFill:
    """One coarse-to-fine exemplar fill of a float (H, W, 3) image (see the module docstring)."""

    def __init__(self, patch: int, coarse: int, em_iterations: int, search_iterations: int, seed: int) -> None:
        if patch < 3 or patch % 2 == 0:
            raise UsageError(f"patchmatch: option 'patch' must be odd and >= 3, got {patch}")
        self.r, self.coarse = patch // 2, coarse
        self.em, self.search = em_iterations, search_iterations
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        pyramid = [(image, hole)]
        while True:
            img, msk = pyramid[-1]
            ys, xs = np.nonzero(msk)
            side = min(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
            if side <= self.coarse or min(img.shape[:2]) // 2 < 4 * (2 * self.r + 1):
                break
            t = torch.from_numpy(img).permute(2, 0, 1)[None]
            small = F.avg_pool2d(t, 2, ceil_mode=True)[0].permute(1, 2, 0).numpy()
            small_hole = F.max_pool2d(torch.from_numpy(msk.astype(np.float32))[None, None], 2, ceil_mode=True)[0, 0]
            pyramid.append((small, small_hole.numpy() > 0))
        estimate = mean_fill(*pyramid[-1])
        for level in range(len(pyramid) - 1, -1, -1):
            img, msk = pyramid[level]
            if level != len(pyramid) - 1:
                up = F.interpolate(torch.from_numpy(estimate).permute(2, 0, 1)[None], size=img.shape[:2], mode="bilinear",
                                   align_corners=False)[0].permute(1, 2, 0).numpy()
                estimate = np.where(msk[..., None], up, img)
            estimate = self._level(np.where(msk[..., None], estimate, img), msk)
        return estimate

    def _level(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        r, (height, width) = self.r, hole.shape
        source_ok = ~_dilate(hole, r)
        source_ok[:r], source_ok[height - r :], source_ok[:, :r], source_ok[:, width - r :] = False, False, False, False
        sources = np.argwhere(source_ok)
        if len(sources) == 0:
            raise DataError(f"patchmatch: no {2 * r + 1}x{2 * r + 1} patch outside the hole at {height}x{width}")
        targets = np.argwhere(_dilate(hole, r))
        ty, tx = targets[:, 0], targets[:, 1]
        index = np.full((height, width), -1)
        index[ty, tx] = np.arange(len(targets))
        for _ in range(self.em):
            patches = patch_matrix(image, r)
            pick = sources[self.rng.integers(0, len(sources), len(targets))]
            sy, sx = pick[:, 0].copy(), pick[:, 1].copy()
            best = patch_distance(patches, width, ty, tx, sy, sx)

            def consider(cy: np.ndarray, cx: np.ndarray, rows: np.ndarray) -> None:
                inside = (cy >= 0) & (cy < height) & (cx >= 0) & (cx < width)
                rows, cy, cx = rows[inside], cy[inside], cx[inside]
                valid = source_ok[cy, cx]
                rows, cy, cx = rows[valid], cy[valid], cx[valid]
                dist = patch_distance(patches, width, ty[rows], tx[rows], cy, cx)
                better = dist < best[rows]
                rows = rows[better]
                sy[rows], sx[rows], best[rows] = cy[better], cx[better], dist[better]

            for _ in range(self.search):
                for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                    ny, nx = ty - dy, tx - dx
                    inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
                    neighbour = np.full(len(targets), -1)
                    neighbour[inside] = index[ny[inside], nx[inside]]
                    rows = np.nonzero(neighbour >= 0)[0]
                    consider(sy[neighbour[rows]] + dy, sx[neighbour[rows]] + dx, rows)
                radius = max(height, width)
                while radius >= 1:
                    rows = np.arange(len(targets))
                    jitter = self.rng.integers(-radius, radius + 1, (2, len(targets)))
                    consider(sy + jitter[0], sx + jitter[1], rows)
                    radius //= 2
            image = self._vote(image, hole, ty, tx, sy, sx)
        return image

    def _vote(self, image: np.ndarray, hole: np.ndarray, ty: np.ndarray, tx: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
        r, (height, width) = self.r, hole.shape
        padded_width = width + 2 * r
        total = torch.zeros((height + 2 * r) * padded_width, 3, dtype=torch.float64)
        count = torch.zeros((height + 2 * r) * padded_width, dtype=torch.float64)
        source = torch.from_numpy(np.ascontiguousarray(image))
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                where = torch.from_numpy((ty + dy + r) * padded_width + tx + dx + r)
                total.index_add_(0, where, source[torch.from_numpy(sy + dy), torch.from_numpy(sx + dx)])
                count.index_add_(0, where, torch.ones(len(ty), dtype=torch.float64))
        total = total.view(height + 2 * r, padded_width, 3)[r : r + height, r : r + width]
        count = count.view(height + 2 * r, padded_width)[r : r + height, r : r + width]
        voted = (total / count.clamp(min=1.0)[..., None]).numpy()
        return np.where(hole[..., None], voted, image)


class PatchMatch(_ClassicalFill):
    name = "patchmatch"
    aliases = ("content-aware-fill-substitute",)
    description = (
        "Exemplar-based fill with PatchMatch search and patch voting, coarse to fine: the open stand-in for "
        "Photoshop's Content-Aware Fill (thesis 'CAF' rows); labelled as a substitute."
    )
    paper = (
        "Barnes, Shechtman, Finkelstein, Goldman. PatchMatch. SIGGRAPH 2009; Wexler, Shechtman, Irani. "
        "Space-Time Completion of Video. TPAMI 2007. Stand-in for Adobe Photoshop Content-Aware Fill"
    )
    options = (
        Option("patch", 7, "patch side (odd)"),
        Option("coarse", 8, "coarsest pyramid level: the hole's shorter bounding side at most this (pixels)"),
        Option("em_iterations", 4, "search + vote rounds per pyramid level"),
        Option("search_iterations", 3, "PatchMatch propagation + random search sweeps per round"),
        Option("seed", 0, "seed of the random initialisation and search"),
    )

    def fill(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        cfg = self.config
        return PatchMatchFill(cfg["patch"], cfg["coarse"], cfg["em_iterations"], cfg["search_iterations"], cfg["seed"])(
            image, hole
        )


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    for method in (MeanFill, Telea, NavierStokes, PatchMatch):
        register(method)
