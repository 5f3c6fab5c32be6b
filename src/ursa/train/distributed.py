"""Several processes through Hugging Face Accelerate (``accelerate launch``).

ursa uses Accelerate for what it does well and nothing else: starting the process
group (gloo on CPUs, nccl on GPUs), wrapping the model in DistributedDataParallel,
sharding the loaders and gathering validation outputs without the padded repeats.
The training loop itself stays :func:`ursa.train.loop.fit`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ursa.core.errors import ConfigError

if TYPE_CHECKING:
    from accelerate import Accelerator


def world_size() -> int:
    """How many processes ``accelerate launch`` (or torchrun) started; 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process may print, checkpoint and export (rank 0, or not distributed)."""
    return int(os.environ.get("RANK", "0")) == 0


def make_accelerator(*, cpu: bool) -> Accelerator:
    """An Accelerator for this process group; mixed precision stays with ursa's own loop."""
    try:
        from accelerate import Accelerator
    except ImportError as error:
        raise ConfigError(
            "distributed training needs Hugging Face Accelerate: pip install 'ursa[train]'"
        ) from error
    return Accelerator(cpu=cpu, mixed_precision="no")
