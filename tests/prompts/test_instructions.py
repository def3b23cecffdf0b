import numpy as np
import pytest
from pydantic import ValidationError

from recranker.candidates import CandidateCounts
from recranker.prompts.config import PromptsConfig
from recranker.prompts.instructions import InstructionBuilder
from recranker.prompts.render import IDENTIFIERS


@pytest.fixture()
def users(split):
    return np.random.default_rng(0).choice(split.users, size=120)


def build(pools, renderer, models, task, users, **settings):
    settings.setdefault("candidate_source", "sampled")  # what most tests here check; retrieved ones below
    config = PromptsConfig(folds=pools.k, tokenizer=None, **settings)
    return InstructionBuilder(pools, renderer, models, config).build(task, users, progress=False)


def test_one_record_per_instance_in_chat_format(pools, renderer, hint_models, users) -> None:
    for task in ("pointwise", "pairwise", "listwise"):
        records = build(pools, renderer, hint_models, task, users)
        assert len(records) == len(users)
        for r, user in zip(records, users):
            roles = [m["role"] for m in r["messages"]]
            assert roles == ["system", "user", "assistant"] and r["user_code"] == user and r["task"] == task
            assert len(r["items"]) == len(r["labels"]) == len(r["permutation"]) == len(r["item_codes"])


def test_answers_agree_with_the_labels(pools, renderer, hint_models, users) -> None:
    for r in build(pools, renderer, hint_models, "pointwise", users):
        assert r["messages"][-1]["content"] == str(int(r["labels"][0])) and r["labels"][0] >= 1
    for r in build(pools, renderer, hint_models, "pairwise", users):
        first_better = r["labels"][0] > r["labels"][1]
        assert r["messages"][-1]["content"] == ("Yes" if first_better else "No")
        assert r["permutation"] == ([0, 1] if first_better else [1, 0])
    for r in build(pools, renderer, hint_models, "listwise", users):
        letters = r["messages"][-1]["content"].split("\n")
        assert len(letters) == r["top"] == 5
        shown = [IDENTIFIERS.index(x) for x in letters]
        labels = np.asarray(r["labels"])
        assert list(labels[shown]) == sorted(labels, reverse=True)[:5]  # best first by grade
        assert [r["permutation"][k] for k in shown] == list(range(5))


def test_same_seed_same_records_other_seed_other_records(pools, renderer, hint_models, users) -> None:
    a = build(pools, renderer, hint_models, "listwise", users)
    b = build(pools, renderer, hint_models, "listwise", users)
    c = build(pools, renderer, hint_models, "listwise", users, seed=1)
    assert a == b and a != c


def test_position_shifting_spreads_the_best_candidate_and_balances_pairs(pools, renderer, hint_models, split) -> None:
    users = np.random.default_rng(1).choice(split.users, size=400)
    listwise = build(pools, renderer, hint_models, "listwise", users)
    best_position = np.array([r["permutation"].index(0) for r in listwise])
    assert np.bincount(best_position, minlength=10).min() > 15  # every position holds the best sometimes
    yes = np.mean([r["messages"][-1]["content"] == "Yes" for r in build(pools, renderer, hint_models, "pairwise", users)])
    assert 0.4 < yes < 0.6


def test_without_shifting_candidates_come_in_hint_order(pools, renderer, hint_models, users) -> None:
    for r in build(pools, renderer, hint_models, "listwise", users, shift_positions=False):
        assert r["hint"]["value"] == list(range(len(r["items"])))


def test_hints_switch_off(pools, renderer, hint_models, users) -> None:
    for task in ("pointwise", "pairwise", "listwise"):
        records = build(pools, renderer, hint_models, task, users[:20], hints={"enabled": False})
        assert all(r["hint"] is None and "collaborative-filtering" not in r["messages"][1]["content"] for r in records)


def test_a_train_share_of_hints_shows_them_on_a_seeded_share_of_instances_the_rest_unchanged(
        pools, renderer, hint_models, users) -> None:
    from recranker.artifacts import fingerprint

    for task in ("pointwise", "pairwise", "listwise"):
        every = build(pools, renderer, hint_models, task, users)
        none = build(pools, renderer, hint_models, task, users, hints={"enabled": False})
        half = build(pools, renderer, hint_models, task, users, hints={"train_share": 0.5})
        assert build(pools, renderer, hint_models, task, users, hints={"train_share": 0.5}) == half  # seeded
        shown = np.array([r["hint"] is not None for r in half])
        assert 0.3 < shown.mean() < 0.7
        for r, with_hint, without in zip(half, every, none):
            # each instance is exactly the one with hints or the one without: the other draws untouched
            assert r == (with_hint if r["hint"] is not None else without)
    assert build(pools, renderer, hint_models, "pointwise", users, hints={"train_share": 1.0}) == \
        build(pools, renderer, hint_models, "pointwise", users)
    # added after runs were made: at its default it leaves the prompts' fingerprint as it was
    assert "train_share" not in PromptsConfig().model_dump()["hints"]
    assert fingerprint(PromptsConfig()) != fingerprint(PromptsConfig(hints={"train_share": 0.5}))


def test_cross_fitting_uses_fold_models_and_its_switch_the_full_ones(pools, renderer, hint_models, users) -> None:
    crossed = build(pools, renderer, hint_models, "pointwise", users)
    assert all(r["hint"]["fold_model"] == r["fold"] for r in crossed)
    in_sample = build(pools, renderer, hint_models, "pointwise", users, hints={"cross_fit": False})
    assert all(r["hint"]["fold_model"] is None for r in in_sample)
    full = hint_models.ratings(np.array([r["user_code"] for r in in_sample]), np.array([r["item_codes"] for r in in_sample]))
    np.testing.assert_allclose([r["hint"]["value"] for r in in_sample], full[:, 0])


def test_candidate_counts_are_configurable(pools, renderer, hint_models, users) -> None:
    counts = CandidateCounts(liked=2, disliked=1, negatives=12)
    renderer.listwise_top = 2  # the answer's length is the renderer's (one spec for training and inference)
    records = build(pools, renderer, hint_models, "listwise", users[:30], listwise=counts)
    assert all(len(r["items"]) == 15 and len(r["messages"][-1]["content"].split("\n")) == 2 for r in records)


def test_retrieved_candidates_are_the_fold_models_top_less_history_and_targets(pools, renderer, hint_models, split,
                                                                               users) -> None:
    targets = {stage: dict(zip(split.users.tolist(), split.target_items(stage).tolist())) for stage in ("valid", "test")}
    for task in ("pointwise", "pairwise", "listwise"):
        records = build(pools, renderer, hint_models, task, users, candidate_source="retrieved")
        assert np.mean([r["candidates"] == "retrieved" for r in records]) > 0.8
        for r in (r for r in records if r["candidates"] == "retrieved"):
            user, fold = r["user_code"], r["fold"]
            top = hint_models.ranking_folds[fold].top_m(np.array([user]), 40, "valid").items[0].tolist()
            top = [i for i in top if i not in (targets["valid"][user], targets["test"][user])][:10]
            assert set(r["item_codes"]) <= set(top) and not set(r["item_codes"]) & set(r["history"])
            rows = pools.rows(user)
            held = dict(zip(pools._items[rows][pools.folds[rows] == fold].tolist(),
                            pools._ratings[rows][pools.folds[rows] == fold].tolist()))
            assert r["labels"] == [held.get(i, 0.0) for i in r["item_codes"]]  # graded by the held-out fold
            if task == "listwise":
                assert r["item_codes"] == [i for i in top if i in r["item_codes"]] or sorted(r["item_codes"]) == sorted(top)
                assert max(r["labels"]) >= 4  # a liked held-out item among them, as a covered user at inference
            elif task == "pairwise":
                assert max(r["labels"]) >= 4 and min(r["labels"]) < max(r["labels"])
            else:
                assert r["labels"][0] >= 1


def test_mixed_candidates_take_their_share_and_sampled_ones_stay_as_they_were(pools, renderer, hint_models,
                                                                               users) -> None:
    sampled = build(pools, renderer, hint_models, "listwise", users)
    assert all(r["candidates"] == "sampled" for r in sampled)
    mixed = build(pools, renderer, hint_models, "listwise", users, candidate_source="mixed", retrieved_share=0.3)
    share = np.mean([r["candidates"] == "retrieved" for r in mixed])
    assert 0.15 < share < 0.45
    retrieved = build(pools, renderer, hint_models, "listwise", users, candidate_source="retrieved")
    assert np.mean([r["candidates"] == "retrieved" for r in retrieved]) > share


def test_mixed_candidates_of_another_listwise_size_show_as_many_of_either_kind(pools, renderer, hint_models,
                                                                               users) -> None:
    # 15 listwise candidates (as ALRO's protocol asks 25): the retrieved lists are as long as the sampled
    counts = CandidateCounts(liked=2, disliked=1, negatives=12)
    assert PromptsConfig(listwise=counts, candidate_source="mixed").depth == 15
    records = build(pools, renderer, hint_models, "listwise", users[:60], candidate_source="mixed", listwise=counts)
    assert {r["candidates"] for r in records} == {"sampled", "retrieved"}
    assert all(len(r["item_codes"]) == 15 for r in records)


def test_a_tasks_own_source_overrides_the_common_one_and_leaves_the_other_tasks_as_they_were(
        pools, renderer, hint_models, users) -> None:
    own = CandidateCounts(liked=3, disliked=2, negatives=5, source="retrieved")
    config = PromptsConfig(folds=pools.k, tokenizer=None, candidate_source="sampled", listwise=own)
    assert [config.source(t) for t in ("pointwise", "pairwise", "listwise")] == ["sampled", "sampled", "retrieved"]
    assert config.retrieved_fraction == 1.0
    listwise = build(pools, renderer, hint_models, "listwise", users, listwise=own)
    assert listwise == build(pools, renderer, hint_models, "listwise", users, candidate_source="retrieved")
    for task in ("pointwise", "pairwise"):  # same records, as if no task drew retrieved candidates
        assert build(pools, renderer, hint_models, task, users, listwise=own) == build(pools, renderer, hint_models,
                                                                                       task, users)
    back = build(pools, renderer, hint_models, "listwise", users, candidate_source="retrieved",
                 listwise=CandidateCounts(liked=3, disliked=2, negatives=5, source="sampled"))
    assert back == build(pools, renderer, hint_models, "listwise", users)


def test_a_source_left_at_its_default_keeps_the_dumped_settings() -> None:
    assert "source" not in CandidateCounts(liked=3).model_dump()  # fingerprints of earlier runs hold
    assert CandidateCounts(liked=3, source="mixed").model_dump()["source"] == "mixed"


def test_retrieved_candidates_keep_the_leakage_guarantees(pools, renderer, hint_models, split, users) -> None:
    from recranker.prompts.leakage import check_instruction_leakage

    records = [r for task in ("pointwise", "pairwise", "listwise")
               for r in build(pools, renderer, hint_models, task, users, candidate_source="retrieved")]
    assert check_instruction_leakage(records, split, hint_models) == 3 * len(users)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"pointwise": {"liked": 0, "neutral": 0, "disliked": 0, "negatives": 3}}, "pointwise: needs rated"),
        ({"pairwise": {"liked": 0, "disliked": 1}}, "pairwise: needs liked"),
        ({"listwise": {"liked": 10, "negatives": 20}}, "listwise: needs 2 to 26"),
        ({"tasks": []}, "give at least one"),
        ({"folds": 1}, "greater than or equal to 2"),
        ({"candidate_source": "fresh"}, "'sampled', 'retrieved' or 'mixed'"),
        ({"candidates": "retrieved"}, "candidates: renamed candidate_source"),
        ({"retrieved_depth": 12}, r"retrieved_depth \(12\) must equal the listwise candidates \(10\)"),
        ({"candidate_source": "sampled", "retrieved_depth": 12, "listwise": {"liked": 3, "negatives": 7,
          "source": "retrieved"}}, r"retrieved_depth \(12\) must equal"),
        ({"listwise": {"liked": 3, "source": "fresh"}}, "'sampled', 'retrieved' or 'mixed'"),
    ],
)
def test_bad_settings_are_refused(settings, message) -> None:
    with pytest.raises(ValidationError, match=message):
        PromptsConfig(**settings)
