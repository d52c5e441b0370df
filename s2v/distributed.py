"""Data-parallel training under ``torchrun``: one process per rank, each with its own
streams of the video; gradients are averaged across ranks before every optimiser
step, so all ranks keep identical weights. Rank 0 alone writes the run directory.

Gradients are all-reduced explicitly rather than through the
``DistributedDataParallel`` wrapper because the WGAN-GP penalty differentiates
the discriminators twice (``create_graph=True``), which the wrapper's reducer
hooks do not support.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


class Context:
    """Rank, world size and the collectives the training loop needs (no-ops alone)."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.owns_group = False
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.owns_group = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def average_gradients(self, module: torch.nn.Module) -> None:
        if self.world == 1:
            return
        for p in module.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= self.world

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (a stop must be taken together)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def same_everywhere(self, module: torch.nn.Module) -> bool:
        """Whether every rank holds exactly the same parameters (checked at the end)."""
        if self.world == 1:
            return True
        vec = torch.cat([p.detach().double().flatten().cpu() for p in module.parameters()])
        low, high = vec.clone(), vec.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        return bool(torch.equal(low, high))

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()
