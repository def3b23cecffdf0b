import numpy as np
import torch

from recranker.retrieval.bpr import bpr_loss, l2_penalty
from recranker.retrieval.lightgcn import LightGCNConfig, Propagation, normalized_adjacency
from recranker.retrieval.mixgcf import MixGCF, mixgcf_loss
from recranker.testing.retrievers import RetrieverContract

FAST = dict(dim=16, layers=2, lr=0.02, batch_size=512, epochs=30, eval_every=5, patience=3, negatives=4)


class TestMixGCF(RetrieverContract):
    def make(self, seed: int = 0) -> MixGCF:
        return MixGCF(MixGCF.Config(seed=seed, **FAST))


def test_the_synthetic_negative_mixes_and_picks_the_hardest_per_layer_by_hand() -> None:
    adjacency = normalized_adjacency(np.array([0, 0, 1, 2]), np.array([0, 1, 2, 3]), n_users=3, n_items=5)
    module = Propagation(adjacency, 3, 5, LightGCNConfig(dim=4, layers=2), torch.Generator().manual_seed(0))
    users, pos, negs = torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([[1, 3, 4], [0, 4, 1]])
    loss = mixgcf_loss(module, users, pos, negs, 0.01, torch.Generator().manual_seed(7))
    # the same draws, then plain loops
    alpha = torch.rand((3, 2, 3, 1), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        stack = module.layer_stack()
    items = stack[:, 3:]
    hard = torch.zeros(2, 4)
    for b in range(2):
        for layer in range(3):
            mixed = [alpha[layer, b, c] * items[layer, pos[b]] + (1 - alpha[layer, b, c]) * items[layer, negs[b, c]]
                     for c in range(3)]
            best = max(range(3), key=lambda c: float(stack[layer, users[b]] @ mixed[c]))
            hard[b] += mixed[best] / 3
    user, positive = stack[:, users].mean(0), items[:, pos].mean(0)
    expected = bpr_loss((user * positive).sum(-1), (user * hard).sum(-1))
    expected = expected + 0.01 * l2_penalty(module.ego[users], module.ego[3:][pos], module.ego[3:][negs].mean(1))
    torch.testing.assert_close(loss.detach(), expected.detach())
