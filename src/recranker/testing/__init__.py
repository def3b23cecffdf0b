"""Public test fixtures: a tiny synthetic dataset (and, later, a tiny random causal LM)."""

from recranker.testing.synthetic import synthetic_dataset, synthetic_frames

__all__ = ["synthetic_dataset", "synthetic_frames"]
