"""Training helpers shared by the torch backbones."""

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
