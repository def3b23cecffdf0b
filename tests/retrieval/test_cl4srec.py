import numpy as np
import torch

from recranker.retrieval.cl4srec import CL4SRec, augment, nt_xent
from recranker.testing.retrievers import RetrieverContract, synthetic_split

FAST = dict(max_len=12, hidden=16, layers=1, heads=2, dropout=0.1, lr=5e-3, batch_size=32, epochs=25, patience=3)


class TestCL4SRec(RetrieverContract):
    def make(self, seed: int = 0) -> CL4SRec:
        return CL4SRec(CL4SRec.Config(seed=seed, **FAST))


def test_augmentations_crop_mask_or_reorder_and_stay_right_aligned() -> None:
    cfg = CL4SRec.Config(crop=0.5, mask=0.5, reorder=0.5)
    tokens = torch.tensor([[0, 0] + list(range(1, 11))] * 200)  # 10 items, left padding
    views = augment(tokens, 99, cfg, torch.Generator().manual_seed(0))
    kinds = set()
    for row in views:
        seq = row[row > 0].tolist()
        assert (row[: len(row) - len(seq)] == 0).all()  # padding only on the left
        if len(seq) == 5 and seq == list(range(seq[0], seq[0] + 5)):
            kinds.add("crop")  # a contiguous half
        elif 99 in seq:
            assert seq.count(99) == 5 and [t for t in seq if t != 99] == [t for t in range(1, 11) if t in seq]
            kinds.add("mask")
        else:
            assert sorted(seq) == list(range(1, 11))  # reordered (a shuffle may leave it as it was)
            moved = [k for k, t in enumerate(seq) if t != k + 1]
            assert not moved or moved[-1] - moved[0] < 5  # the shuffle stays inside half the sequence
            kinds.add("reorder" if moved else "reorder, unchanged")
    assert {"crop", "mask", "reorder"} <= kinds


def test_nt_xent_prefers_aligned_views() -> None:
    a = torch.eye(4) * 5
    aligned, crossed = nt_xent(a, a.clone(), 1.0), nt_xent(a, a[[1, 2, 3, 0]], 1.0)
    assert float(aligned) < 0.05 < float(crossed)
    z = torch.cat([a, a])
    logits = (z @ z.T).masked_fill(torch.eye(8, dtype=torch.bool), float("-inf"))
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([4, 5, 6, 7, 0, 1, 2, 3]))
    torch.testing.assert_close(aligned, expected)


def test_the_mask_token_is_never_scored() -> None:
    split = synthetic_split()
    model = CL4SRec(CL4SRec.Config(**{**FAST, "epochs": 1})).fit(split, progress=False)
    assert model.n_tokens == split.n_items + 2 and model.score_all(split.users[:3]).shape == (3, split.n_items)
    assert np.isfinite(model.score_all(split.users[:3])).all()
