"""The micro-batcher: concurrent items share calls, a full queue refuses, stop answers what waits."""

import threading
import time

import pytest

from recranker.serve.batcher import Batcher, QueueFull


def test_items_submitted_together_are_answered_by_one_call_in_order() -> None:
    calls = []
    batcher = Batcher(lambda items: calls.append(list(items)) or [x * 10 for x in items], window_s=0.5, max_batch=8)
    futures = [batcher.submit(x) for x in range(5)]  # queued before the worker starts
    batcher.start()
    assert [f.result(timeout=10) for f in futures] == [0, 10, 20, 30, 40]
    batcher.stop()
    assert calls == [[0, 1, 2, 3, 4]]


def test_max_batch_splits_the_waiting_items() -> None:
    calls = []
    batcher = Batcher(lambda items: calls.append(len(items)) or list(items), window_s=0.2, max_batch=2)
    futures = [batcher.submit(x) for x in range(5)]
    batcher.start()
    assert [f.result(timeout=10) for f in futures] == list(range(5))
    batcher.stop()
    assert calls == [2, 2, 1]


def test_a_full_queue_refuses_at_once_and_stop_answers_what_waits() -> None:
    release = threading.Event()
    batcher = Batcher(lambda items: release.wait(10) and list(items), window_s=0.0, max_batch=1, queue_size=2)
    batcher.start()
    first = batcher.submit("a")
    deadline = time.monotonic() + 10
    while not first.running() and time.monotonic() < deadline:  # the worker takes "a": the queue is empty again
        time.sleep(0.001)
    waiting = [batcher.submit("b"), batcher.submit("c")]
    with pytest.raises(QueueFull, match="2 requests are waiting"):
        batcher.submit("d")
    release.set()
    batcher.stop(timeout=10)
    assert [f.result(timeout=1) for f in [first, *waiting]] == ["a", "b", "c"]
    with pytest.raises(QueueFull, match="shutting down"):
        batcher.submit("e")


def test_a_failing_call_fails_its_batch_and_the_worker_goes_on() -> None:
    def handle(items):
        if "bad" in items:
            raise RuntimeError("boom")
        if "odd" in items:
            return False  # not a list of results: must fail the batch, not kill the worker
        if "short" in items:
            return []
        return list(items)

    batcher = Batcher(handle, window_s=0.0, max_batch=1).start()
    with pytest.raises(RuntimeError, match="boom"):
        batcher.submit("bad").result(timeout=10)
    with pytest.raises(TypeError):
        batcher.submit("odd").result(timeout=10)
    with pytest.raises(RuntimeError, match="0 results for 1 requests"):
        batcher.submit("short").result(timeout=10)
    assert batcher.submit("good").result(timeout=10) == "good"
    batcher.stop()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(list, max_batch=0)


def test_a_failing_batch_is_answered_item_by_item_so_only_the_bad_item_fails() -> None:
    calls = []

    def handle(items):
        calls.append(list(items))
        if "bad" in items:
            raise RuntimeError("boom")
        return [item.upper() for item in items]

    release = threading.Event()
    batcher = Batcher(lambda items: release.wait(10) and handle(items), window_s=0.5, max_batch=4)
    futures = [batcher.submit(item) for item in ("a", "bad", "c")]  # queued before the worker starts
    batcher.start()
    release.set()
    assert [futures[0].result(timeout=10), futures[2].result(timeout=10)] == ["A", "C"]
    with pytest.raises(RuntimeError, match="boom"):
        futures[1].result(timeout=10)
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    batcher.stop()
