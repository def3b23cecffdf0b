"""Public test fixtures: a tiny synthetic dataset, a tiny random causal LM and its tokenizer."""

from recranker.testing.synthetic import synthetic_dataset, synthetic_frames, tiny_study
from recranker.testing.tiny_lm import tiny_causal_lm, tiny_tokenizer

__all__ = ["synthetic_dataset", "synthetic_frames", "tiny_study", "tiny_causal_lm", "tiny_tokenizer"]
