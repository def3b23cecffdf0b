"""Training helpers shared by the torch backbones."""

import pytest
import torch

from recranker.retrieval.base import minibatches, optimize


def test_minibatches_cover_every_row_once_in_seeded_order() -> None:
    batches = list(minibatches(10, 4, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    again = list(minibatches(10, 4, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))


def test_optimize_steps_once_per_loss_and_returns_the_mean() -> None:
    weight = torch.nn.Parameter(torch.tensor(1.0))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    seen: list[float] = []

    def losses():
        for _ in range(3):
            seen.append(weight.item())  # each loss is built after the previous step
            yield weight**2

    mean = optimize(optimizer, losses())
    assert seen == [1.0, 0.0, 0.0]  # w <- w - 0.5 * 2w
    assert mean == 1.0 / 3
    assert optimize(optimizer, iter(())) == 0.0


def test_max_minutes_stops_at_the_first_evaluation_past_the_budget() -> None:
    from recranker.retrieval.bpr import BPRMF
    from recranker.testing.retrievers import synthetic_split

    split = synthetic_split()
    settings = dict(dim=8, batch_size=256, epochs=30, eval_every=3, patience=30)
    unlimited = BPRMF(BPRMF.Config(**settings)).fit(split, progress=False)
    assert len(unlimited.log) == 30 and not unlimited.stopped_by_budget
    budgeted = BPRMF(BPRMF.Config(**settings, max_minutes=1e-9)).fit(split, progress=False)
    assert len(budgeted.log) == 3  # epochs 1 and 2 have no evaluation to stop at
    assert budgeted.stopped_by_budget


def test_positives_interacted_learns_from_every_training_interaction() -> None:
    from recranker.artifacts import fingerprint
    from recranker.retrieval import make_retriever
    from recranker.retrieval.bpr import PairSampler
    from recranker.testing.retrievers import synthetic_split

    split = synthetic_split()
    liked, every = PairSampler(split), PairSampler(split, positives="interacted")
    assert len(liked) == len(split.liked_train()) < len(every) == len(split.train)
    disliked = split.train[split.dataset.feedback.disliked(split.train["rating"].to_numpy())]
    assert every.is_positive(disliked["user"].to_numpy(), disliked["item"].to_numpy()).all()
    assert not liked.is_positive(disliked["user"].to_numpy(), disliked["item"].to_numpy()).any()
    pop = make_retriever("pop", {"positives": "interacted"}).fit(split, progress=False)
    assert pop.counts.sum() == len(split.train)
    seqs = make_retriever("sasrec", {"positives": "interacted", "epochs": 1}).fit(split, progress=False)
    assert sum(len(s) for s in split.sequences("valid", liked_only=False)) == len(split.train)
    assert seqs.score_all(split.users[:2]).shape == (2, split.n_items)
    # the default is left out of the dumped settings, so runs made before it keep their fingerprints
    assert "positives" not in make_retriever("lightgcn").config.model_dump()
    exposure = make_retriever("lightgcn", {"positives": "interacted"})
    assert fingerprint(make_retriever("lightgcn").config) != fingerprint(exposure.config)
    with pytest.raises(ValueError, match="positives must be 'liked' or 'interacted'"):
        split.train_positives("seen")
