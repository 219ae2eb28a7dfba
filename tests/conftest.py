"""Shared test set-up: the benchmark data directory and small fixtures."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Tests read the local benchmark files beside the repo unless told otherwise.
os.environ.setdefault("MENTALESE_DATA_DIR", str(SHARED_DATA))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ["MENTALESE_DATA_DIR"])
    assert path.is_dir(), f"benchmark data directory {path} is missing (set MENTALESE_DATA_DIR)"
    return path


def sft_config(output_dir, *overrides: str):
    """The shipped chain CoT recipe, shrunk for tests (2-step problems, no checkpoints unless asked)."""
    from mentalese.config import load_config
    from mentalese.methods.sft import SFTConfig
    from mentalese.recipes import resolve_recipe

    base = [f"output_dir={output_dir}", "max_steps=150", "task_options={num_steps: 2, num_examples: 2000}",
            "save_steps=1000", "logging_steps=10", "disable_tqdm=true"]
    return load_config(SFTConfig, resolve_recipe("sft/chain_cot"), base + list(overrides))


@pytest.fixture(scope="session")
def tiny_chain_run(tmp_path_factory) -> Path:
    """A tiny GPT-2 trained briefly (150 steps, CoT) on 2-step chain problems; returns its run dir."""
    from mentalese.methods.sft import train_sft

    run_dir = tmp_path_factory.mktemp("chain_cot")
    train_sft(sft_config(run_dir))
    return run_dir


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and lose 10-100x when other jobs share the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


OLD_CACHE_NAME_LOG = "`past_key_values`/`cache_params` are deprecated"


@pytest.fixture(autouse=True)
def old_cache_name_is_an_error(monkeypatch):
    """Reading a model output's cache as `.past_key_values` (or building an output so) is reported by
    transformers through `logger.warning_once`, not a warning, so pyproject's filterwarnings miss it: raise
    it as a FutureWarning instead (and on every occurrence: warning_once logs only the first)."""
    from transformers.utils import generic

    original = generic.logger.warning_once

    def warning_once(msg, *args, **kwargs):
        if OLD_CACHE_NAME_LOG in str(msg):
            raise FutureWarning(f"{msg} (mentalese passes and reads it as `cache`: models/cache_kwargs.py)")
        return original(msg, *args, **kwargs)

    monkeypatch.setattr(generic.logger, "warning_once", warning_once)
