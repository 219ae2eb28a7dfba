"""Same seed + same library versions + same CPU type -> same numbers.

Float reductions on the CPU are split across intra-op threads, so the thread count changes the last
bits of every matmul, and over hundreds of optimizer steps those bits change a tiny model's accuracy
(docs/LOG.md, 2026-12-02: 1 vs 2 threads gave different grad norms at step 100). Runs that publish
numbers (the demo, the comparison tables) therefore fix the thread count instead of taking the
machine's core count, and ask torch for deterministic algorithms where it offers them.
"""

from __future__ import annotations

import os

from mentalese.errors import MentaleseError


def make_deterministic(threads: int) -> None:
    """Fix torch's intra- and inter-op thread counts and turn on deterministic algorithms."""
    import torch

    if threads < 1:
        raise MentaleseError(f"threads must be >= 1, got {threads}")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # needed by deterministic cuBLAS
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set (interop threads can be set once per process, before any parallel work)
        pass
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
