"""torchrun plumbing for ``solverzoo bench``: join the process group, agree on rank 0's verdict."""

from __future__ import annotations


def init_distributed() -> tuple[int, int]:
    """Under torchrun (WORLD_SIZE > 1): join the process group (gloo) and return (rank, world size)."""
    from ..bench.validate import check_env

    env = check_env()  # WORLD_SIZE, RANK, SOLVERZOO_DIST_TIMEOUT_MIN: named when malformed
    if env["world_size"] <= 1:
        return 0, 1
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=env["timeout_min"]))
    return dist.get_rank(), dist.get_world_size()


def agree(message: str | None, world: int) -> str | None:
    """Rank 0's verdict (an error message or None), on every rank."""
    if world <= 1:
        return message
    import torch.distributed as dist

    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]
