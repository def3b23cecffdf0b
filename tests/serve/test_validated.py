"""The service serves what the study validated: the system it selected on validation users, named in
every answer, and for a validation user asked as the study asked, the study's own order."""

import numpy as np
import pytest

from recranker.ranking.llm import RankerOutputs
from recranker.ranking.systems import Systems
from recranker.serve import Reranker
from recranker.split import Split
from recranker.types import Rankings


def study_requests(run, n: int | None = None) -> tuple[list[dict], dict[int, int]]:
    """Requests for the first `n` users (None: all) of the run's validation pass, as the study asked
    them (the raw user id, target valid, the candidates in the backbone's order with its scores),
    and each user code's row in the stored lists."""
    split = Split.load(str(run / "split"))
    backbone = next(p.name for p in (run / "rank").iterdir())
    out = RankerOutputs.load(run / "rank" / backbone / "tuned" / "valid" / "outputs.npz")
    candidates = Rankings.load(run / "retrieval" / backbone / "candidates_valid.npz")
    row_of = {int(u): k for k, u in enumerate(candidates.users)}
    users, items = split.dataset.user_ids, split.dataset.item_ids
    requests = []
    for u, row in zip(out.users[:n], out.items[:n]):
        scores = candidates.scores[row_of[int(u)]]
        assert np.array_equal(candidates.items[row_of[int(u)]], row)  # the pass asked about the backbone's order
        requests.append({"history": None, "candidates": [str(items[i]) for i in row], "scores": scores.tolist(),
                         "user": str(users[int(u)]), "target": "valid"})
    return requests, {int(u): k for k, u in enumerate(out.users)}


def stored_order(run, system: str, user_code: int, rows: dict[int, int], items) -> list[str]:
    backbone = next(p.name for p in (run / "rank").iterdir())
    lists = Rankings.load(run / "results" / backbone / "valid_lists" / f"{system.replace(' ', '_')}.npz")
    k = int(np.flatnonzero(lists.users == user_code)[0])
    return [str(items[i]) for i in lists.items[k]]


@pytest.mark.parametrize("run_name", ["tiny_run", "tiny_run_generating"])
def test_a_validation_user_gets_the_order_the_study_stored_for_each_system(request, run_name) -> None:
    run = request.getfixturevalue(run_name)
    systems = Systems.load(next((run / "results").glob("*/systems.json")))
    assert systems.available() == ["hybrid", "tuned hybrid", "learned fusion"]
    requests, rows = study_requests(run)
    split = Split.load(str(run / "split"))
    codes = {str(raw): code for code, raw in enumerate(split.dataset.user_ids.tolist())}
    for system in systems.available():
        served = Reranker.load(run, system=system)
        served.backend.pad_multiple = 1  # batched as the study batched them: the very same computation
        results = served.rank_many([reranker_request(body) for body in requests])
        for body, result in zip(requests, results):
            assert result.system == system and result.hints
            expected = stored_order(run, system, codes[body["user"]], rows, split.dataset.item_ids)
            assert [i.item for i in result.items] == expected, (run_name, system, body["user"])


def test_the_generated_order_is_what_a_generating_run_serves(tiny_run_generating) -> None:
    """A `listwise: generate` run's weights were tuned on the generated listwise order: the service's
    listwise utility is that order's, not the one-pass logits' (it once was, whatever the run)."""
    reranker = Reranker.load(tiny_run_generating, system="hybrid")
    assert reranker.systems.hybrid.listwise == "generate" and reranker.ranker.config.generate
    body = study_requests(tiny_run_generating)[0][0]
    result = reranker.rank(**body)
    parsed = reranker.parse(reranker_request(body))
    items = parsed.candidates[None, :]
    out = reranker._ask([parsed], tuple(reranker.tasks), items, *reranker._hints([parsed], items))
    generated = reranker.systems.hybrid.utilities(out)["listwise"][0]
    by_logits = reranker.systems.hybrid.utilities(out)["listwise_logits"][0]
    assert not np.allclose(generated, by_logits)  # the two orders differ here, so the test can tell them apart
    shown = {item.item: item.utilities["listwise"] for item in result.items}
    ids = [str(i) for i in reranker.item_ids]
    assert [shown[ids[c]] for c in parsed.candidates] == pytest.approx(generated.tolist())


def reranker_request(body: dict):
    from recranker.serve import RankRequest

    return RankRequest(body["history"], body["candidates"], body["scores"], body["user"], None, None, body["target"])


def test_the_validated_system_is_served_by_default_and_named(reranker, tiny_run) -> None:
    systems = Systems.load(next((tiny_run / "results").glob("*/systems.json")))
    assert reranker.system == systems.selected in ("tuned hybrid", "learned fusion")
    assert set(systems.validation) >= {"backbone", "hybrid", "tuned hybrid", "learned fusion"}
    result = reranker.rank([("i1", 5)], ["i3", "i4", "i15"], scores=[3, 2, 1])
    assert result.system == systems.selected
    without_scores = reranker.rank([("i1", 5)], ["i3", "i4", "i15"])
    assert without_scores.system == ("tuned hybrid" if systems.selected == "learned fusion" else systems.selected)


@pytest.mark.parametrize("body, message", [
    ({"history": None, "candidates": ["i3"], "user": "u3"}, "history: give a list"),
    ({"history": None, "candidates": ["i3"], "user": "u3", "target": "later"}, "target: give one of valid, test"),
    ({"history": None, "candidates": ["i3"], "user": "nobody", "target": "valid"}, "target: needs a user"),
    ({"history": [("i1", 5)], "candidates": ["i3"], "user": "u3", "target": "valid"}, "history: leave it out"),
])
def test_a_bad_target_request_is_one_message(reranker, body, message) -> None:
    from recranker.serve import RequestError

    with pytest.raises(RequestError, match=message):
        reranker.rank(**body)


def test_a_system_the_run_did_not_fit_is_refused(tiny_run) -> None:
    from recranker.errors import RecrankerError

    with pytest.raises(RecrankerError, match="system: 'best' was not fitted"):
        Reranker.load(tiny_run, system="best")


def test_the_http_service_answers_a_validation_user_with_the_studys_order(tiny_run_generating) -> None:
    """Over HTTP, with the requests in one batch as the study batched them (its validation users at
    once, no padding): each answer names its system and is the study's stored order. (The tuned
    hybrid: the learned fusion's rank feature flips on float noise between the tiny model's
    near-equal logits, whatever order the batch's rows arrive in.)"""
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from recranker.serve.app import ServeSettings, create_app

    reranker = Reranker.load(tiny_run_generating, pad_multiple=1, system="tuned hybrid")
    requests, rows = study_requests(tiny_run_generating)
    split = Split.load(str(tiny_run_generating / "split"))
    codes = {str(raw): code for code, raw in enumerate(split.dataset.user_ids.tolist())}
    settings = ServeSettings(batch_window_ms=2000, max_batch=len(requests))
    with TestClient(create_app(reranker, settings)) as client:
        health = client.get("/healthz").json()
        assert health["system"] == "tuned hybrid" and health["selected_on"]["validated"] == reranker.systems.selected
        with ThreadPoolExecutor(len(requests)) as pool:  # in one batching window: one backend call
            answers = list(pool.map(lambda body: client.post("/v1/rerank", json=body).json(), requests))
    for body, answer in zip(requests, answers):
        assert answer["system"] == "tuned hybrid"
        expected = stored_order(tiny_run_generating, answer["system"], codes[body["user"]], rows, split.dataset.item_ids)
        assert [i["item"] for i in answer["items"]] == expected, body["user"]
