"""`recranker serve` as a real process: it answers over HTTP and, on SIGTERM, finishes what is in flight."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

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


@pytest.mark.parametrize("flags, message", [
    (["--queue-size", "0"], "--queue-size: between 1 and"),
    (["--max-batch", "0"], "--max-batch: between 1 and"),
    (["--batch-window-ms", "-1"], "--batch-window-ms: between 0 and"),
    (["--batch-window-ms", "nan"], "--batch-window-ms: between 0 and"),
    (["--max-body-kb", "0"], "--max-body-kb: between 1 and"),
    (["--port", "99999"], "--port: between 1 and 65535"),
    (["--max-history", "-1"], "--max-history: between 1 and"),
    (["--max-candidates", "27"], "--max-candidates: between 1 and 26"),
    (["--pad-multiple", "0"], "--pad-multiple: between 1 and 1024"),
])
def test_bad_flags_end_with_one_line_naming_the_flag_before_anything_starts(tiny_run, capsys, flags, message) -> None:
    from recranker.cli.main import main

    assert main(["serve", str(tiny_run), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_a_port_in_use_is_refused_before_the_model_loads(tiny_run, capsys) -> None:
    from recranker.cli.main import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(tiny_run), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--port {port} on --host 127.0.0.1: cannot listen there" in err and "serving" not in err
