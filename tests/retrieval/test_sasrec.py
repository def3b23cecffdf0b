import numpy as np
import pytest
import torch

from recranker.retrieval.sasrec import SASRec
from recranker.retrieval.sequence import pad_left, windows
from recranker.testing.retrievers import RetrieverContract, synthetic_split

FAST = dict(max_len=12, hidden=16, layers=1, heads=2, dropout=0.1, lr=5e-3, batch_size=32, epochs=25, patience=3)


class TestSASRec(RetrieverContract):
    def make(self, seed: int = 0) -> SASRec:
        return SASRec(SASRec.Config(seed=seed, **FAST))


@pytest.fixture(scope="module")
def model() -> SASRec:
    return SASRec(SASRec.Config(**FAST)).fit(synthetic_split(), progress=False)


def test_output_at_t_ignores_later_items(model: SASRec) -> None:
    tokens = torch.tensor([[0, 0, 0, 5, 9, 3, 7, 2, 11, 4, 8, 6]])
    changed = tokens.clone()
    changed[0, 8:] = torch.tensor([20, 21, 22, 23])
    with torch.no_grad():
        before, after = model.module.encode(tokens), model.module.encode(changed)
    torch.testing.assert_close(before[:, :8], after[:, :8])
    assert not torch.allclose(before[:, 8:], after[:, 8:])


def test_padding_does_not_change_the_scores(model: SASRec) -> None:
    tokens = torch.tensor([[0, 0, 0, 0, 0, 5, 9, 3, 7, 2, 11, 4]])
    noise = torch.randn(6, model.module.items.embedding_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model.module(tokens)
        model.module.items.weight[0] += noise[0]  # what a padding key would carry, were it attended to
        model.module.positions.weight[:5] += noise[1:]
        after = model.module(tokens)
        model.module.items.weight[0] -= noise[0]
        model.module.positions.weight[:5] -= noise[1:]
    torch.testing.assert_close(before, after)


def test_scores_read_the_stage_history(model: SASRec) -> None:
    split = synthetic_split()
    users = split.users[:6]
    valid, test = model.score_all(users, "valid"), model.score_all(users, "test")
    assert not np.allclose(valid, test)  # the test history adds the validation target
    again = model.score_all(users[::-1], "test")[::-1]
    np.testing.assert_allclose(again, test, rtol=1e-5, atol=1e-6)


def test_windows_make_every_item_but_the_first_a_target_once() -> None:
    seq = np.arange(10, 33)  # 23 items, windows of 5 inputs + 1
    rows = pad_left(windows([seq], size=6, step=5, min_len=2), 6)
    inputs, targets = SASRec.make_batch(None, torch.from_numpy(rows), torch.Generator())  # type: ignore[arg-type]
    got = np.sort(targets[targets >= 0].numpy())
    np.testing.assert_array_equal(got, seq[1:])
    assert (inputs[:, -1] > 0).all()  # windows are right-aligned
