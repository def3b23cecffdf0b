"""The HTTP service: /v1/rerank, /healthz, /metrics; every bad request a 4xx with one message."""

import json
import threading
import time

import pytest
from fastapi.testclient import TestClient

from recranker.serve.app import ServeSettings, create_app

BODY = {"history": [{"item": "i1", "rating": 5}, {"title": "Uncatalogued", "rating": 4}],
        "candidates": ["i3", "i4", "i15", "i25", "i35"], "k": 3}


@pytest.fixture(scope="module")
def client(reranker):
    with TestClient(create_app(reranker, ServeSettings(api_key="s3cret", max_body_bytes=4096))) as client:
        client.headers["Authorization"] = "Bearer s3cret"
        yield client


def test_rerank_answers_like_the_python_api(client, reranker) -> None:
    response = client.post("/v1/rerank", json=BODY)
    assert response.status_code == 200, response.text
    got = response.json()
    expected = reranker.rank([("i1", 5), {"title": "Uncatalogued", "rating": 4}], BODY["candidates"], k=3)
    assert [i["item"] for i in got["items"]] == [i.item for i in expected.items]
    assert got["hints"] is False and got["tasks"] == expected.tasks
    assert client.get("/healthz").json()["status"] == "ok"
    assert "/v1/rerank" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("body, status, message", [
    ({**BODY, "candidates": ["i3", "nope"]}, 422, "candidates[1]: unknown item id 'nope'"),
    ({**BODY, "candidates": []}, 422, "candidates: give a non-empty list"),
    ({**BODY, "candidates": "i3"}, 422, "candidates: Input should be a valid list"),
    ({**BODY, "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ({**BODY, "k": "3"}, 422, "k: Input should be a valid integer"),
    ({**BODY, "k": True}, 422, "k: Input should be a valid integer"),
    ({**BODY, "history": [{"item": "i1", "rating": True}]}, 422, "history.0.rating"),
    ({**BODY, "history": [{"item": "i1", "rating": "x"}]}, 422, "history.0.rating"),
    ({**BODY, "extra": 1}, 422, "extra: Extra inputs are not permitted"),
    ({"candidates": ["i3"]}, 422, "history: give a list"),
    ({**BODY, "candidates": [f"i{k % 40}" for k in range(1000)]}, 413, "request body over 4096 bytes"),
])
def test_bad_bodies_get_one_message(client, body, status, message) -> None:
    response = client.post("/v1/rerank", json=body)
    assert response.status_code == status and message in response.json()["error"]


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe\x00", b"", b"null", b"[" * 1500 + b"]" * 1500, b'"text"'])
def test_bodies_that_are_not_a_json_object_get_one_4xx_message(client, raw) -> None:
    response = client.post("/v1/rerank", content=raw, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422) and response.json()["error"], response.text


def test_invalid_json_and_missing_token(client) -> None:
    response = client.post("/v1/rerank", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.json()["error"]
    response = client.post("/v1/rerank", json=BODY, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert client.get("/healthz").status_code == 200  # open without the token, and still serving
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "Not Found"


def test_metrics_count_requests_and_batches(client) -> None:
    client.post("/v1/rerank", json=BODY)
    text = client.get("/metrics").text
    assert 'recranker_requests_total{status="200"}' in text
    assert 'recranker_requests_total{status="422"}' in text
    assert "recranker_batch_size_count" in text and 'recranker_tokens_total{kind="prompt_tokens"}' in text


def test_a_full_queue_answers_503_with_retry_after(reranker, monkeypatch) -> None:
    taken, release = threading.Event(), threading.Event()
    original = reranker.rank_many

    def held(requests):
        taken.set()
        if not release.wait(30):
            raise TimeoutError("the test never released the worker")
        return original(requests)

    monkeypatch.setattr(reranker, "rank_many", held)
    app = create_app(reranker, ServeSettings(queue_size=1, max_batch=1, batch_window_ms=0))
    with TestClient(app) as client:
        results = []

        def post() -> None:
            results.append(client.post("/v1/rerank", json=BODY))

        def wait_for(ready) -> None:
            deadline = time.monotonic() + 30
            while not ready() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert ready(), "the request never reached the batcher"

        threads = [threading.Thread(target=post) for _ in range(2)]
        threads[0].start()  # the one the worker holds
        wait_for(taken.is_set)
        threads[1].start()  # the one in the queue
        wait_for(lambda: app.state.batcher.waiting == 1)
        try:
            busy = client.post("/v1/rerank", json=BODY)
        finally:
            release.set()
            for t in threads:
                t.join(60)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert json.loads(busy.text)["error"].startswith("busy")
    assert sorted(r.status_code for r in results) == [200, 200]


class Poisoned:
    """Wraps a backend that raises on any prompt holding the word POISON (a fault no check sees)."""

    def __init__(self, backend):
        self.inner = backend

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, requests, token_ids):
        if any("POISON" in r.text for r in requests):
            raise TypeError("the backend choked")
        return self.inner.run(requests, token_ids)


def test_a_failing_request_in_a_batch_fails_alone(reranker, monkeypatch) -> None:
    monkeypatch.setattr(reranker.ranker, "backend", Poisoned(reranker.ranker.backend))
    sizes, original = [], reranker.rank_many

    def counted(requests):
        sizes.append(len(requests))
        return original(requests)

    monkeypatch.setattr(reranker, "rank_many", counted)
    good = [{**BODY, "candidates": BODY["candidates"][k:] + BODY["candidates"][:k]} for k in range(5)]
    poison = {**BODY, "history": [{"title": "POISON pill", "rating": 5}]}
    bodies = good[:2] + [poison] + good[2:]
    app = create_app(reranker, ServeSettings(max_batch=6, batch_window_ms=3000))
    with TestClient(app) as client:
        answers: dict[int, object] = {}
        threads = [threading.Thread(target=lambda n=n: answers.__setitem__(n, client.post("/v1/rerank", json=bodies[n])))
                   for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        alone = [client.post("/v1/rerank", json=body).json() for body in good]
    assert sizes[0] == 6, sizes  # the six went to the backend together, then one by one
    statuses = [answers[n].status_code for n in range(6)]
    assert statuses == [200, 200, 500, 200, 200, 200]
    together = [answers[n].json() for n in (0, 1, 3, 4, 5)]
    assert [[i["item"] for i in a["items"]] for a in together] == [[i["item"] for i in a["items"]] for a in alone]


def test_text_that_is_not_unicode_is_refused_naming_the_field(client) -> None:
    raw = json.dumps({**BODY, "history": [{"title": "x\ud800", "rating": 4}]})  # JSON's \\ud800 escape
    assert "\\ud800" in raw
    response = client.post("/v1/rerank", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"].startswith("history[0].title: not valid Unicode")
