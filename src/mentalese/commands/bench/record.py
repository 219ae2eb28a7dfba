"""What every benchmark's JSON records besides its numbers: the software and machine it ran on."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

from mentalese.atomic_files import write_text_atomic


def environment(device: torch.device | str) -> dict[str, Any]:
    """Library versions, platform and device: speed ratios are only comparable within one of these."""
    import transformers

    device = torch.device(device)
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "platform": platform.platform(),
           "machine": platform.processor() or platform.machine(), "device": str(device),
           "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def write_result(path: str | Path, result: dict[str, Any]) -> dict[str, Any]:
    write_text_atomic(Path(path), json.dumps(result, indent=2))
    return result
