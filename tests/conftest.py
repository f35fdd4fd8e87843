"""Test-wide settings."""

import torch

# The models under test are small: intra-op threads only add synchronisation, and on a
# shared 2-core machine they can slow a test down tenfold.
torch.set_num_threads(1)
