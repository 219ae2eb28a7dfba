"""Shipped `accelerate launch --config_file` files for GPUs (see docs/scale.md).

    ddp.yaml               one copy of the weights per GPU (DistributedDataParallel); every method
    fsdp.yaml              FSDP2, weights/gradients/optimiser state sharded; SFT and the BoLT M-step (not CODI)
    deepspeed_zero2.yaml   ZeRO-2: gradients and optimiser state sharded; every method
    deepspeed_zero3.yaml   ZeRO-3: weights sharded too; SFT and the BoLT M-step (not CODI)

Precision comes from the recipe (`bf16: true`), not from these files (`mixed_precision: "no"` here).
"""

from __future__ import annotations

from pathlib import Path

from mentalese.errors import MentaleseError

ACCELERATE_CONFIGS_DIR = Path(__file__).parent


def list_accelerate_configs() -> list[str]:
    return sorted(p.stem for p in ACCELERATE_CONFIGS_DIR.glob("*.yaml"))


def accelerate_config_path(name: str) -> Path:
    """The path of a shipped config by name (e.g. "fsdp"), for `accelerate launch --config_file`."""
    path = ACCELERATE_CONFIGS_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        raise MentaleseError(f"no accelerate config {name!r}; shipped: {', '.join(list_accelerate_configs())}")
    return path
