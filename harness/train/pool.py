"""A history of generated images for the discriminator (Shrivastava et al. 2017; CycleGAN's image pool).

It draws from Python's global ``random`` as the CycleGAN code does, which is why the engine saves and
restores that generator; its stored images are checkpointed through ``state_dict``.
"""

from __future__ import annotations

import random
from typing import Any

import torch


class ImagePool:
    """Returns, per image, either the image itself or (with probability 1/2 once full) a stored one
    that it replaces, so the discriminator also sees older generator outputs."""

    def __init__(self, size: int = 50) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        chosen = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                chosen.append(image)
            elif random.random() > 0.5:
                slot = random.randint(0, self.size - 1)
                chosen.append(self.images[slot].clone())
                self.images[slot] = image.clone()
            else:
                chosen.append(image)
        return torch.cat(chosen)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": [image.cpu() for image in self.images]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size = int(state["size"])
        self.images = list(state["images"])
