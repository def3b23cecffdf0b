"""`recranker serve` as a real process: it answers over HTTP and, on SIGTERM, finishes what is in flight."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx

BODY = {"history": [{"item": "i1", "rating": 5}], "candidates": ["i3", "i4", "i15"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_and_sigterm_lets_the_request_in_flight_finish(tiny_run) -> None:
    port = free_port()
    env = {**os.environ, "RECRANKER_API_KEY": "k"}
    process = subprocess.Popen([sys.executable, "-m", "recranker.cli.main", "serve", str(tiny_run), "--port", str(port),
                                "--batch-window-ms", "1500"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert httpx.post(f"{url}/v1/rerank", json=BODY).status_code == 401
        answers = []
        request = threading.Thread(target=lambda: answers.append(
            httpx.post(f"{url}/v1/rerank", json=BODY, headers={"Authorization": "Bearer k"}, timeout=60)))
        request.start()
        time.sleep(0.5)  # the request waits in its 1.5 s batching window
        process.send_signal(signal.SIGTERM)
        request.join(60)
        assert process.wait(60) == 0, process.stdout.read()
        assert answers and answers[0].status_code == 200
        assert sorted(i["item"] for i in answers[0].json()["items"]) == sorted(BODY["candidates"])
    finally:
        if process.poll() is None:
            process.kill()
