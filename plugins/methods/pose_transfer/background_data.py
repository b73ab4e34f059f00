"""Auxiliary background images for SPT's background network (paper Eq. 13: Places2 val as I_aux).

Places2's validation set is distributed as one flat folder (``val_256/Places365_val_00000001.jpg`` ...,
36,500 images of 256x256); any flat folder of images serves. An image is centre-cropped to the training
images' aspect ratio and resized (bilinear, antialiased) to their size: Places2's 256x256 images pass
unchanged at DeepFashion's 256x256, Market-1501's 128x64 gets the middle half of the width.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from harness import DataError
from harness.data import list_images, read_image, to_tensor


def aux_images(folder: str | Path) -> list[Path]:
    """The folder's image files (not recursive), sorted by name; a missing or empty folder is a `DataError`."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise DataError(f"spt: aux_backgrounds folder {path} does not exist (expected a flat folder of .jpg/.png "
                        "images, e.g. Places2's val_256/)")
    files = list_images(path)
    if not files:
        raise DataError(f"spt: aux_backgrounds folder {path} holds no images (expected .jpg/.png files directly "
                        "inside it, e.g. Places2's val_256/Places365_val_00000001.jpg)")
    return files


def load_background(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) in [0, 1]: the image centre-cropped to the aspect ratio of ``size``, then resized to it."""
    image = to_tensor(read_image(path))
    height, width = image.shape[-2:]
    target_h, target_w = size
    if height * target_w > width * target_h:  # too tall: keep the middle rows
        keep = max(1, round(width * target_h / target_w))
        top = (height - keep) // 2
        image = image[:, top : top + keep]
    elif height * target_w < width * target_h:  # too wide: keep the middle columns
        keep = max(1, round(height * target_w / target_h))
        left = (width - keep) // 2
        image = image[:, :, left : left + keep]
    if tuple(image.shape[-2:]) != (target_h, target_w):
        image = F.interpolate(image[None], size=(target_h, target_w), mode="bilinear", align_corners=False,
                              antialias=True)[0].clamp(0, 1)
    return image
