import os
import sys
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES.parent))  # tests/media.py, tests/netguard.py

import netguard  # noqa: E402

# No test may use the network: connects and lookups of anything but loopback raise (and are recorded).
netguard.install()

# Fixture tolerances were measured with 2 intra-op threads; keep runs comparable on any machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(autouse=True)
def restore_threads():
    """A test that narrows torch to one thread (DDP workers, timing) does not slow the tests after it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_network():
    before = len(netguard.attempts)
    yield
    assert netguard.attempts[before:] == [], f"the test tried the network: {netguard.attempts[before:]}"
