"""A randomly initialised FID Inception state dict in the layout of both libraries' weight files."""

from __future__ import annotations

import torch
import torchvision


def random_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision's Inception-v3 with 1008 classes and no aux head has the parameter names and shapes
    of ``pt_inception-…pth`` and ``weights-inception-…pth``; activations are kept O(1)."""
    torch.manual_seed(seed)
    model = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    torch.nn.init.normal_(model.fc.weight, std=0.05)
    return model.state_dict()
