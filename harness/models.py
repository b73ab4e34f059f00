"""Facts about a method's network that the core, the CLI and plugins report the same way."""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class ParameterCount:
    """Parameter counts of one network; a tensor shared by several modules (weight sharing) counts once.

    Papers count a shared tensor once (S-DSEN's stages share one block), and so does ``parameters()``;
    ``references`` says how many module attributes point at the ``tensors`` distinct ones.
    """

    params: int
    trainable: int
    tensors: int
    references: int
    buffer_elements: int


def count_parameters(model: torch.nn.Module) -> ParameterCount:
    """The one place parameters are counted (`harness info`, the ``params`` metric, training manifests)."""
    unique: dict[int, torch.nn.Parameter] = {}
    references = 0
    for _, parameter in model.named_parameters(remove_duplicate=False):
        references += 1
        unique[id(parameter)] = parameter
    buffers = {id(b): b for _, b in model.named_buffers(remove_duplicate=False)}
    return ParameterCount(
        params=sum(p.numel() for p in unique.values()),
        trainable=sum(p.numel() for p in unique.values() if p.requires_grad),
        tensors=len(unique),
        references=references,
        buffer_elements=sum(b.numel() for b in buffers.values()),
    )
