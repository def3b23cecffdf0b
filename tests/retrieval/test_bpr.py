import numpy as np
import pytest
import torch

from recranker.retrieval.bpr import BPRMF, PairSampler, bpr_loss
from recranker.testing.retrievers import RetrieverContract, synthetic_split


def small(seed: int = 0, **overrides) -> BPRMF:
    settings = dict(seed=seed, dim=16, lr=0.02, l2=1e-3, batch_size=256, epochs=30, eval_every=5, patience=3)
    return BPRMF(BPRMF.Config(**{**settings, **overrides}))


class TestBPRMF(RetrieverContract):
    def make(self, seed: int = 0) -> BPRMF:
        return small(seed)


def test_bpr_loss_is_log2_at_a_tie_and_falls_with_the_margin() -> None:
    tie = bpr_loss(torch.zeros(3), torch.zeros(3))
    assert float(tie) == pytest.approx(np.log(2))
    assert float(bpr_loss(torch.tensor([2.0]), torch.tensor([0.0]))) == pytest.approx(np.log1p(np.exp(-2.0)))
    with pytest.raises(ValueError, match="same shape"):
        bpr_loss(torch.zeros(3), torch.zeros(2))


def test_negatives_avoid_the_users_liked_training_items() -> None:
    split = synthetic_split()
    sampler = PairSampler(split, retries=20)
    generator = torch.Generator().manual_seed(0)
    neg = sampler.negatives(sampler.users, generator)
    assert not sampler.is_positive(sampler.users, neg).any()
    assert sampler.is_positive(sampler.users, sampler.items).all()


def test_training_loss_decreases() -> None:
    model = small(epochs=10, eval_every=10)
    model.fit(synthetic_split(), progress=False)
    losses = [entry["loss"] for entry in model.log]
    assert losses[-1] < 0.5 * losses[0], losses
