import numpy as np
import pytest
import torch

from recranker.retrieval.bert4rec import BERT4Rec, mask_items
from recranker.testing.retrievers import RetrieverContract, synthetic_split

FAST = dict(max_len=12, hidden=32, layers=1, heads=2, dropout=0.0, lr=5e-3, batch_size=16, epochs=40, patience=8)


class TestBERT4Rec(RetrieverContract):
    def make(self, seed: int = 0) -> BERT4Rec:
        return BERT4Rec(BERT4Rec.Config(seed=seed, **FAST))


@pytest.fixture(scope="module")
def model() -> BERT4Rec:
    return BERT4Rec(BERT4Rec.Config(**FAST)).fit(synthetic_split(), progress=False)


@pytest.mark.parametrize("prob", [0.15, 0.4])
def test_masking_rate_is_as_configured(prob: float) -> None:
    rows = torch.randint(1, 50, (4000, 20))
    rows[:, :5] = 0  # padding is never masked
    tokens, targets = mask_items(rows, 99, prob, torch.Generator().manual_seed(0))
    masked = tokens == 99
    assert not masked[:, :5].any()
    assert abs(masked[:, 5:].float().mean().item() - prob) < 0.01
    assert masked.any(dim=1).all()
    assert torch.equal(targets[masked], rows[masked] - 1)
    assert (targets[~masked] == -1).all()
    assert torch.equal(tokens[~masked], rows[~masked])


def test_attention_sees_both_directions_but_not_padding(model: BERT4Rec) -> None:
    tokens = torch.tensor([[0, 0, 0, 5, 9, 3, 7, 2, 11, 4, 8, 6]])
    changed = tokens.clone()
    changed[0, -1] = 20
    with torch.no_grad():
        before, after = model.module.encode(tokens), model.module.encode(changed)
        assert not torch.allclose(before[:, 3:8], after[:, 3:8])  # earlier positions read later items
        noise = torch.randn(4, model.module.items.embedding_dim, generator=torch.Generator().manual_seed(0))
        model.module.items.weight[0] += noise[0]
        model.module.positions.weight[:3] += noise[1:]
        padded = model.module.encode(tokens)
        model.module.items.weight[0] -= noise[0]
        model.module.positions.weight[:3] -= noise[1:]
    torch.testing.assert_close(padded[:, 3:], before[:, 3:])


def test_scoring_appends_mask_after_the_history(model: BERT4Rec) -> None:
    split = synthetic_split()
    queries = model.query_tokens(split.sequences("test"))
    mask = model.n_tokens - 1
    assert (queries[:, -1] == mask).all()
    user = int(split.users[0])
    history = split.sequences("test")[user][-(model.config.max_len - 1) :]
    np.testing.assert_array_equal(queries[user, -1 - len(history) : -1], history + 1)
    assert (queries[:, :-1] != mask).all()
