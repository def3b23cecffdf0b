import math

import pytest
import torch

from recranker.tuning.losses import PermutationSensitiveLoss, SoftLambdaLoss

ALL = torch.ones(1, 2, dtype=torch.bool)


def softmax_position(ys: list[float], slots: list[float], gamma: float) -> float:
    weights = [math.exp(gamma * y) for y in ys]
    return sum(w * s for w, s in zip(weights, slots)) / sum(weights)


def test_soft_lambda_loss_matches_a_hand_computation() -> None:
    # one answer position, two candidates: A (grade 3) emitted with p 0.8, B (grade 0) with p 0.1
    probs = torch.tensor([[[0.8, 0.1]]])
    loss = SoftLambdaLoss(gamma=2.0, sigma=1.0)(probs, torch.tensor([[3.0, 0.0]]), ALL)
    # each candidate: position 1 with y, "not listed" (position 2) with 1 - y
    p_a = softmax_position([0.8, 0.2], [1, 2], 2.0)
    p_b = softmax_position([0.1, 0.9], [1, 2], 2.0)
    delta = abs(1 / math.log2(2) - 1 / math.log2(3))  # ranks 1 and 2: |1/D(1) - 1/D(2)|
    gain_gap = 1.0  # (2^3 - 1) / maxDCG with maxDCG = 7 / log2(2); B's gain is 0
    expected = delta * gain_gap * math.log2(1 + math.exp(-((-p_a) - (-p_b))))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_soft_lambda_expected_positions_without_the_extra_slot_when_all_are_listed() -> None:
    probs = torch.tensor([[[0.7, 0.2], [0.1, 0.6]]])  # (B=1, T=2, M=2): every candidate has a position
    positions = SoftLambdaLoss(gamma=3.0).expected_positions(probs, ALL)
    assert positions[0, 0].item() == pytest.approx(softmax_position([0.7, 0.1], [1, 2], 3.0), rel=1e-6)
    assert positions[0, 1].item() == pytest.approx(softmax_position([0.2, 0.6], [1, 2], 3.0), rel=1e-6)


def test_soft_lambda_is_lower_when_the_model_ranks_the_better_candidate_first() -> None:
    loss = SoftLambdaLoss()
    grades = torch.tensor([[5.0, 1.0]])
    right = loss(torch.tensor([[[0.9, 0.05], [0.05, 0.9]]]), grades, ALL)
    wrong = loss(torch.tensor([[[0.05, 0.9], [0.9, 0.05]]]), grades, ALL)
    assert right.item() < wrong.item()


def test_soft_lambda_gradient_reaches_the_probabilities_and_pushes_the_right_way() -> None:
    probs = torch.tensor([[[0.3, 0.3], [0.3, 0.3]]], requires_grad=True)
    SoftLambdaLoss()(probs, torch.tensor([[4.0, 0.0]]), ALL).backward()
    assert torch.isfinite(probs.grad).all()
    assert probs.grad[0, 0, 0] < 0  # more mass on "the better one first" lowers the loss
    assert probs.grad[0, 0, 1] > 0


def test_soft_lambda_ignores_masked_candidates_and_examples_without_pairs() -> None:
    loss = SoftLambdaLoss()
    probs = torch.tensor([[[0.8, 0.1]]])
    base = loss(probs, torch.tensor([[3.0, 0.0]]), ALL)
    padded = loss(torch.tensor([[[0.8, 0.1, 0.05]]]), torch.tensor([[3.0, 0.0, 5.0]]),
                  torch.tensor([[True, True, False]]))
    assert padded.item() == pytest.approx(base.item(), rel=1e-6)
    ties = loss(torch.tensor([[[0.8, 0.1]], [[0.8, 0.1]]]), torch.tensor([[3.0, 0.0], [2.0, 2.0]]),
                torch.ones(2, 2, dtype=torch.bool))
    assert ties.item() == pytest.approx(base.item(), rel=1e-6)  # the tied example has no pair
    assert loss(probs, torch.tensor([[1.0, 1.0]]), ALL).item() == 0.0


def test_soft_lambda_shape_errors_name_the_expected_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(B, T, M\)"):
        SoftLambdaLoss()(torch.rand(1, 2, 3), torch.rand(1, 2), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="3 dimensions"):
        SoftLambdaLoss()(torch.rand(2, 3), torch.rand(2, 3), torch.ones(2, 3, dtype=torch.bool))


def test_permutation_loss_matches_a_hand_computation() -> None:
    first, second = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]])
    loss = PermutationSensitiveLoss()(first, second, ALL)
    p_b = 1 / (1 + math.e)  # softmax([1, 0])[1]
    # -(p_a log q_a + p_b log q_b), q = softmax([0, 1])
    expected = -((1 - p_b) * -math.log(1 + math.e) + p_b * (1 - math.log(1 + math.e)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_permutation_loss_is_smallest_when_the_views_agree() -> None:
    first = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]]])
    loss = PermutationSensitiveLoss()
    same = loss(first, first, torch.ones(1, 3, dtype=torch.bool))
    entropy = -(first.softmax(-1) * first.log_softmax(-1)).sum(-1).mean()
    assert same.item() == pytest.approx(entropy.item(), rel=1e-6)
    assert loss(first, first.flip(-1), torch.ones(1, 3, dtype=torch.bool)).item() > same.item()


def test_permutation_loss_masks_candidates_and_positions() -> None:
    loss = PermutationSensitiveLoss()
    first, second = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]])
    base = loss(first, second, ALL)
    padded = loss(torch.tensor([[[1.0, 0.0, 9.0], [3.0, 3.0, 3.0]]]), torch.tensor([[[0.0, 1.0, -9.0], [0.0, 5.0, 1.0]]]),
                  torch.tensor([[True, True, False]]), torch.tensor([[True, False]]))
    assert padded.item() == pytest.approx(base.item(), rel=1e-6)


def test_permutation_loss_gradient_reaches_both_views_unless_the_target_is_detached() -> None:
    first = torch.tensor([[[1.0, 0.0]]], requires_grad=True)
    second = torch.tensor([[[0.0, 1.0]]], requires_grad=True)
    PermutationSensitiveLoss()(first, second, ALL).backward()
    assert first.grad.abs().sum() > 0 and second.grad.abs().sum() > 0
    first.grad = second.grad = None
    PermutationSensitiveLoss(detach_target=True)(first, second, ALL).backward()
    assert first.grad is None and second.grad.abs().sum() > 0
