import numpy as np
import torch

from recranker.retrieval.lightgcn import LightGCN
from recranker.retrieval.sgl import SGL, info_nce
from recranker.testing.retrievers import RetrieverContract, synthetic_split

FAST = dict(dim=16, layers=2, lr=0.02, batch_size=512, epochs=30, eval_every=5, patience=3)


class TestSGL(RetrieverContract):
    def make(self, seed: int = 0) -> SGL:
        return SGL(SGL.Config(seed=seed, **FAST))


def test_info_nce_by_hand() -> None:
    first = torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    second = torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    # rows 0 and 1 asked; every row of the second view is a candidate
    cos = np.array([[1.0, 2**-0.5, 0.0], [0.0, 2**-0.5, -1.0]]) / 0.5
    expected = np.mean([np.log(np.exp(row).sum()) - row[k] for k, row in enumerate(cos)])
    assert abs(float(info_nce(first, second, torch.tensor([0, 1]), 0.5)) - expected) < 1e-6


def test_views_drop_their_share_of_edges_and_stay_normalised() -> None:
    split = synthetic_split()
    model = SGL(SGL.Config(drop_ratio=0.3, **{**FAST, "epochs": 0})).fit(split, progress=False)
    edges = len(model.sampler.users)
    view = model.dropped_view(split, torch.Generator().manual_seed(1)).to_dense()
    kept = int((view[: split.n_users] != 0).sum())
    assert 0.6 * edges < kept < 0.8 * edges
    degree = (view != 0).sum(1).float()
    upper = view[: split.n_users, split.n_users :]
    rows, cols = upper.nonzero(as_tuple=True)
    expected = (degree[rows] * degree[split.n_users + cols]) ** -0.5
    torch.testing.assert_close(upper[rows, cols], expected)  # D^-1/2 A D^-1/2 of the view itself


def test_without_the_contrastive_loss_it_is_lightgcn() -> None:
    split = synthetic_split()
    sgl = SGL(SGL.Config(ssl_weight=0.0, l2=1e-4, **{**FAST, "epochs": 5})).fit(split, progress=False)  # LightGCN's L2
    plain = LightGCN(LightGCN.Config(**{**FAST, "epochs": 5})).fit(split, progress=False)
    np.testing.assert_allclose(sgl.score_all(split.users[:5]), plain.score_all(split.users[:5]), rtol=1e-6)


def test_the_contrastive_loss_changes_training() -> None:
    split = synthetic_split()
    sgl = SGL(SGL.Config(**{**FAST, "epochs": 5})).fit(split, progress=False)
    plain = LightGCN(LightGCN.Config(**{**FAST, "epochs": 5})).fit(split, progress=False)
    assert not np.allclose(sgl.score_all(split.users[:5]), plain.score_all(split.users[:5]))
