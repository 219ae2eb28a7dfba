"""Fixed shards of work, shared by processes, one atomic file each: resumable, data-parallel runs.

Evaluation and the BoLT E-step both follow these rules, which make every result independent of
the number of processes and of interruptions:

- the work (examples, chunks) is cut into fixed shards of `shard_size` items, in index order;
- a shard is computed alone, seeded from (seed, shard index) only, never from the process;
- a finished shard is one file written atomically (temporary file + rename), so a killed run
  loses at most the shards in flight (one per process);
- the output directory holds a run file with a fingerprint of the settings and data; a rerun
  with another fingerprint is refused, a rerun with the same one skips the finished shards;
- every process lists the finished shards, then (after a barrier) takes the unfinished ones
  round-robin; after a second barrier the main process merges the shards in index order.

Several processes: launch with `torchrun --nproc_per_node N` (or `accelerate launch --multi_gpu`;
note that `accelerate launch --cpu --num_processes N` without an MPI hostfile starts one process).
Every process must call the sharded function, as for any collective.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mentalese.atomic_files import write_text_atomic
from mentalese.errors import MentaleseError


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes sharing the work."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def share(self, shards: Sequence[int]) -> list[int]:
        """This process's part of `shards`: every world_size-th, starting at its rank."""
        return list(shards)[self.rank::self.world_size]


SINGLE_PROCESS = Processes()


def current_processes() -> Processes:
    """The process group this process runs in (torchrun / accelerate), or a single process.

    Initialises torch.distributed through accelerate's `PartialState` when the launcher set
    WORLD_SIZE > 1 and nobody has initialised it yet (gloo on CPU, nccl on GPU).
    """
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return SINGLE_PROCESS
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    return Processes(state.process_index, state.num_processes, state.local_process_index)


def resolve_processes(processes: Processes | str | None) -> Processes:
    """"auto" -> `current_processes()`; None -> one process; a `Processes` as it is."""
    if processes == "auto":
        return current_processes()
    if processes is None:
        return SINGLE_PROCESS
    if not isinstance(processes, Processes):
        raise MentaleseError(f"processes must be 'auto', None or a Processes, got {processes!r}")
    return processes


def num_shards(num_items: int, shard_size: int) -> int:
    if shard_size < 1:
        raise MentaleseError(f"shard_size must be >= 1, got {shard_size}")
    return -(-num_items // shard_size)


def shard_slice(shard: int, shard_size: int) -> slice:
    return slice(shard * shard_size, (shard + 1) * shard_size)


def shard_seed(seed: int, shard: int) -> int:
    """The sampling seed of a shard; shard 0 keeps `seed`, so one-shard runs match unsharded ones."""
    return seed + 1_000_003 * shard


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (anything else is hashed by its str)."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def claim_directory(run_file: Path, run_fingerprint: str, initial: dict, processes: Processes,
                    mismatch: str) -> tuple[dict, bool]:
    """Check that `run_file` (JSON with a "fingerprint" key) belongs to this run, or create it.

    Returns (its content, whether it already existed). Raises `MentaleseError(mismatch)` when it
    belongs to another run; every process reads it, so every process raises. The main process
    writes a missing run file and removes temporary files left by a killed writer.
    """
    existed = run_file.exists()
    if existed:
        try:
            state = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise MentaleseError(f"cannot read {run_file} ({e}); delete it to start over") from None
        if state.get("fingerprint") != run_fingerprint:
            raise MentaleseError(mismatch)
    else:
        state = {**initial, "fingerprint": run_fingerprint}
    if processes.is_main:
        if not existed:
            write_text_atomic(run_file, json.dumps(state, indent=1))
        for tmp in run_file.parent.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    return state, existed


def plan_shards(total: int, is_done: Callable[[int], bool], processes: Processes) -> tuple[list[int], list[int]]:
    """(finished shards, this process's unfinished ones). Lists first, then waits for every process,
    so all processes see the same finished set before anyone writes a new shard."""
    done = [s for s in range(total) if is_done(s)]
    processes.barrier()
    todo = [s for s in range(total) if s not in set(done)]
    return done, processes.share(todo)


def read_json_line(path: Path) -> dict | None:
    """The first line of a JSONL file as a dict, or None when it is missing or unreadable."""
    try:
        with path.open(encoding="utf-8") as f:
            return json.loads(f.readline())
    except (OSError, ValueError):
        return None
