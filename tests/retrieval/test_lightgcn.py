import numpy as np
import torch

from recranker.retrieval.lightgcn import LightGCN, SymmetricProduct, normalized_adjacency
from recranker.testing.retrievers import RetrieverContract, synthetic_split


def small(seed: int = 0, **overrides) -> LightGCN:
    settings = dict(seed=seed, dim=16, layers=2, lr=0.02, batch_size=512, epochs=30, eval_every=5, patience=3)
    return LightGCN(LightGCN.Config(**{**settings, **overrides}))


class TestLightGCN(RetrieverContract):
    def make(self, seed: int = 0) -> LightGCN:
        return small(seed)


def test_adjacency_is_symmetrically_normalised_on_a_hand_made_graph() -> None:
    # users u0, u1 and items i0, i1; edges u0-i0, u0-i1, u1-i1 (u0-i1 twice: counts once)
    adj = normalized_adjacency(np.array([0, 0, 1, 0]), np.array([0, 1, 1, 1]), n_users=2, n_items=2)
    # degrees: u0 2, u1 1, i0 1, i1 2; nodes ordered u0, u1, i0, i1
    s = 2**-0.5
    expected = np.array(
        [
            [0, 0, s, 0.5],
            [0, 0, 0, s],
            [s, 0, 0, 0],
            [0.5, s, 0, 0],
        ]
    )
    np.testing.assert_allclose(adj.to_dense().numpy(), expected, rtol=1e-6)


def test_symmetric_product_has_the_dense_products_value_and_gradient() -> None:
    adj = normalized_adjacency(np.array([0, 0, 1, 2]), np.array([0, 1, 2, 2]), n_users=3, n_items=3)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    weights = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    (SymmetricProduct.apply(adj, SymmetricProduct.apply(adj, x)) * weights).sum().backward()
    sparse_grad, x.grad = x.grad, None
    dense = adj.to_dense()
    (dense @ (dense @ x) * weights).sum().backward()
    torch.testing.assert_close(sparse_grad, x.grad)
    torch.testing.assert_close(SymmetricProduct.apply(adj, x), dense @ x)


def test_isolated_nodes_get_empty_rows() -> None:
    adj = normalized_adjacency(np.array([0]), np.array([0]), n_users=2, n_items=3).to_dense()
    assert adj.shape == (5, 5)
    assert adj[1].abs().sum() == 0 and adj[4].abs().sum() == 0
    assert adj[0, 2] == 1.0


def test_scores_use_the_restored_best_weights_not_a_stale_cache() -> None:
    split = synthetic_split()
    model = small(epochs=12, eval_every=1, patience=2).fit(split, progress=False)
    with torch.no_grad():
        users, items = model.module.propagate()
    expected = (users[torch.as_tensor(split.users[:5].copy())] @ items.T).numpy()
    np.testing.assert_allclose(model.score_all(split.users[:5]), expected, rtol=1e-5, atol=1e-6)
    assert model.user_embeddings().shape == (split.n_users, 16)


def test_zero_layers_is_plain_matrix_factorization() -> None:
    model = small(layers=0, epochs=0)
    model.fit(synthetic_split(), progress=False)
    users, items = model.module.propagate()
    np.testing.assert_array_equal(torch.cat([users, items]).detach().numpy(), model.module.ego.detach().numpy())
