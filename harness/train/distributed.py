"""Data parallelism under ``torchrun``: process-group setup and gradient averaging.

Every rank builds the same recipe from the same seed (so starts from the same weights), trains on its
`TrainContext.shard` of each global batch, and averages gradients over ranks before every optimizer
step: the gradient semantics of PyTorch DDP, applied per optimizer (rather than by wrapping modules
in `DistributedDataParallel`) so it also holds for recipes that step a discriminator and a generator
in turn, whichever modules their losses went through. Buffers such as BatchNorm running statistics
are not synchronised (each rank keeps its own; rank 0's are saved). Only rank 0 writes the output
folder; a stop request is rank 0's decision for all ranks.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched() -> bool:
    """True when started by ``torchrun`` (or ``torch.distributed.run``) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str) -> tuple[int, int, str]:
    """Join the process group (gloo on CPU, nccl on CUDA); returns (rank, world size, this rank's device)."""
    if not launched():
        return 0, 1, device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
        torch.cuda.set_device(device)
    return rank, world, device


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Replace each gradient of the optimizer's parameters by its mean over all ranks."""
    world = dist.get_world_size()
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def mean_values(values: dict[str, float]) -> dict[str, float]:
    """Average logged losses over ranks, so the log shows the global batch's loss."""
    if not dist.is_initialized() or not values:
        return values
    tensor = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(tensor)
    return dict(zip(values, (tensor / dist.get_world_size()).tolist()))


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's decision (e.g. "stop now") on every rank."""
    if not dist.is_initialized():
        return flag
    tensor = torch.tensor([int(flag)])
    dist.broadcast(tensor, 0)
    return bool(tensor.item())
