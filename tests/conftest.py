"""Test-wide settings: one torch thread (tiny tensors run faster without thread hand-offs)."""

import torch

torch.set_num_threads(1)
