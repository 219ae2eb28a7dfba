"""make_deterministic fixes the thread count and turns on deterministic algorithms; the demo calls it."""

import pytest
import torch

from mentalese.determinism import make_deterministic
from mentalese.errors import MentaleseError


@pytest.fixture
def restore_torch_settings():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


def test_fixes_threads_and_algorithms(restore_torch_settings):
    make_deterministic(1)
    assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    make_deterministic(2)
    assert torch.get_num_threads() == 2


def test_rejects_a_bad_thread_count():
    with pytest.raises(MentaleseError, match="threads must be >= 1, got 0"):
        make_deterministic(0)


def test_demo_config_carries_a_fixed_thread_count():
    from mentalese.commands.demo import DemoConfig

    assert DemoConfig().threads == 2  # not the machine's core count: the count changes the numbers
