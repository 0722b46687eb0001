import os
import random
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def seed(request):
    """A fresh seed per test (RA_TEST_SEED fixes it), printed so a failure can be rerun."""
    value = int(os.environ.get("RA_TEST_SEED", random.SystemRandom().randrange(2**31)))
    print(f"seed {value} (RA_TEST_SEED={value} pytest {request.node.nodeid})")
    torch.manual_seed(value)
    return value


def random_gates(mode, H, dtype=torch.float32, device="cpu"):
    """Gate parameters away from the clamp floor (values in [0.3, 1.3])."""
    if mode == "none":
        return None, None
    n = H if mode == "per_head" else 1
    return (torch.rand(n, dtype=dtype, device=device) + 0.3,
            torch.rand(n, dtype=dtype, device=device) + 0.3)


def random_restart(H, dtype=torch.float32, device="cpu"):
    """Restart parameters inside (0, 0.5), away from the clamp edges."""
    return torch.rand(H, dtype=dtype, device=device) * 0.4 + 0.05
