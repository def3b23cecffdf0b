"""Benchmark: `recranker serve` under load, and under hostile input.

Starts `recranker serve RUN` in a process of its own, then:

1. load: for each concurrency c (1, 4, 16), c async httpx clients post /v1/rerank back to back for
   `--duration` seconds, each request a real test user of the run (the history before their test
   target, most recent first, and the run's backbone candidates): requests/s, latency p50/p95/p99,
   errors (any answer but 200), and the batch sizes the server formed (from its /metrics);
2. bad requests: at least 50 malformed or hostile bodies (wrong types, huge lists, unknown ids,
   invalid JSON, missing token, oversized body, ...): every answer must be a 4xx, none a 5xx, and
   /healthz must still answer afterwards.

    python bench/serve.py --run runs/ml-100k-alro [--duration 60] [--concurrency 1 4 16] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

KEY = "bench-key"


def bodies(run: Path, n: int, history: int) -> list[dict]:
    """Requests of the run's first `n` covered-or-not test users: history and candidates as raw ids."""
    from recranker.runs import FinishedRun
    from recranker.types import Rankings

    finished = FinishedRun.open(run)
    cfg, split = finished.cfg, finished.split()
    backbone = next(iter(cfg.retrieval.models))
    candidates = Rankings.load(run / "retrieval" / backbone / "candidates_test.npz")
    ids = split.dataset.item_ids
    frame = split.history("test")
    out = []
    for row in range(min(n, len(candidates))):
        user = int(candidates.users[row])
        rows = frame[frame["user"] == user]
        items, ratings = rows["item"].to_numpy()[::-1][:history], rows["rating"].to_numpy()[::-1][:history]
        out.append({"history": [{"item": str(ids[i]), "rating": float(r)} for i, r in zip(items, ratings)],
                    "candidates": [str(ids[i]) for i in candidates.items[row]]})
    return out


def start_server(run: Path, port: int, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    env = {**os.environ, "RECRANKER_API_KEY": KEY}
    process = subprocess.Popen([sys.executable, "-m", "recranker.cli.main", "serve", str(run), "--port", str(port),
                                "--queue-size", "64", "--max-batch", "16", *extra], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"recranker serve exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("recranker serve did not start within 300 s")


def serve_on_free_port(run: Path, extra: tuple[str, ...] = ()) -> tuple[str, subprocess.Popen]:
    """(its URL, the process) of `recranker serve RUN [extra flags]` on a free loopback port, answering."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}", start_server(run, port, extra)


def batch_histogram(url: str) -> dict[str, float]:
    """The server's cumulative batch-size histogram: {le: count} and the sum and count."""
    import httpx

    out = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("recranker_batch_size_bucket"):
            out[line.split('le="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(("recranker_batch_size_sum", "recranker_batch_size_count")):
            out[line.split(" ")[0].rsplit("_", 1)[1]] = float(line.rsplit(" ", 1)[1])
    return out


async def load(url: str, requests: list[dict], clients: int, seconds: float) -> dict:
    """`clients` clients posting back to back for `seconds`: latencies and statuses."""
    import httpx

    latencies, statuses = [], []
    stop = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {KEY}"}

    async def client(k: int, http: httpx.AsyncClient) -> None:
        n = k
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                response = await http.post(f"{url}/v1/rerank", json=requests[n % len(requests)], headers=headers)
                statuses.append(response.status_code)
            except httpx.HTTPError as exc:
                statuses.append(type(exc).__name__)
            latencies.append(time.perf_counter() - started)
            n += clients

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(*(client(k, http) for k in range(clients)))
    wall = time.perf_counter() - started
    lat = np.array(latencies)
    return {"clients": clients, "requests": len(lat), "wall": wall, "rps": len(lat) / wall,
            "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99)), "errors": sum(s != 200 for s in statuses)}


def hostile(good: dict) -> list[tuple[str, bytes | None, dict]]:
    """(what, raw body or None for the JSON of the dict, the dict) of 50+ bad requests."""
    cases: list[tuple[str, bytes | None, dict]] = []
    add = lambda what, body: cases.append((what, None, body))  # noqa: E731
    for field in ("history", "candidates"):
        for value in (None, 1, "x", {"a": 1}, [None], [[1, 2, 3]], True, 1.5):
            add(f"{field} = {value!r}", {**good, field: value})
    for value in ("5", None, [], {"x": 1}, True, "NaN"):
        add(f"rating = {value!r}", {**good, "history": [{"item": good["candidates"][0], "rating": value}]})
    for value in (0, -1, "3", 1.5, [], True):
        add(f"k = {value!r}", {**good, "k": value})
    for value in ([], ["no-such-item"], [10**12], [good["candidates"][0]] * 2, [""] , [f"x{i}" for i in range(30)]):
        add(f"candidates = {str(value)[:40]}", {**good, "candidates": value})
    add("history of 10,000 entries", {**good, "history": good["history"][:1] * 10000})
    add("unknown history item", {**good, "history": [{"item": "no-such-item", "rating": 4}]})
    add("history item and title", {**good, "history": [{"item": good["candidates"][0], "title": "t", "rating": 4}]})
    add("title of 10,000 characters", {**good, "history": [{"title": "x" * 10000, "rating": 4}]})
    add("scores of the wrong length", {**good, "scores": [1.0]})
    add("scores not numbers", {**good, "scores": ["a"] * len(good["candidates"])})
    add("unknown task", {**good, "tasks": ["summarise"]})
    add("unknown field", {**good, "admin": True})
    add("empty object", {})
    add("a list, not an object", [good])  # type: ignore[arg-type]
    for what, raw in (("invalid JSON", b"{not json"), ("truncated JSON", json.dumps(good).encode()[:-5]),
                      ("not UTF-8", b"\xff\xfe\x00"), ("empty body", b""), ("JSON null", b"null"),
                      ("1 MB of whitespace", b" " * 1_000_000), ("deeply nested", b"[" * 5000 + b"]" * 5000)):
        cases.append((what, raw, {}))
    return cases


def bad_requests(url: str, good: dict) -> list[dict]:
    import httpx

    rows = []
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(timeout=60) as http:
        for what, raw, body in hostile(good):
            headers = {**auth, "content-type": "application/json"}
            response = http.post(f"{url}/v1/rerank", content=raw if raw is not None else json.dumps(body), headers=headers)
            rows.append({"what": what, "status": response.status_code, "error": response.json().get("error", "")
                         if response.headers.get("content-type", "").startswith("application/json") else response.text[:80]})
        for what, headers in (("no token", {}), ("wrong token", {"Authorization": "Bearer nope"}),
                              ("basic auth", {"Authorization": "Basic YTpi"})):
            response = http.post(f"{url}/v1/rerank", json=good, headers=headers)
            rows.append({"what": what, "status": response.status_code, "error": response.json().get("error", "")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/ml-100k-alro"))
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--users", type=int, default=200, help="distinct test users the requests cycle through")
    parser.add_argument("--history", type=int, default=50, help="history entries sent per request")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    requests = bodies(args.run, args.users, args.history)
    url, process = serve_on_free_port(args.run)
    try:
        asyncio.run(load(url, requests[:2], 1, 5.0))  # warm-up
        rows = []
        for clients in args.concurrency:
            before = batch_histogram(url)
            row = asyncio.run(load(url, requests, clients, args.duration))
            after = batch_histogram(url)
            row["batches"] = after["count"] - before["count"]
            row["mean batch"] = (after["sum"] - before["sum"]) / max(row["batches"], 1)
            row["batch sizes"] = {le: after[le] - before[le] for le in after if le not in ("sum", "count")}
            rows.append(row)
            print(row, flush=True)
        bad = bad_requests(url, requests[0])
        alive = __import__("httpx").get(f"{url}/healthz").status_code == 200
    finally:
        process.terminate()
        process.wait(60)
    write_report(args, rows, bad, alive, len(requests[0]["candidates"]))


def write_report(args, rows: list[dict], bad: list[dict], alive: bool, m: int) -> None:
    single = rows[0]["p50"] if rows and rows[0]["clients"] == 1 else float("nan")
    header = "| clients | requests | req/s | p50 s | p95 s | p99 s | p95 / single p50 | errors | batches | mean batch |"
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['requests']} | {r['rps']:.2f} | {r['p50']:.2f} | {r['p95']:.2f} | "
                     f"{r['p99']:.2f} | {r['p95'] / single:.1f} | {r['errors']} | {r['batches']:.0f} | {r['mean batch']:.1f} |")
    statuses = {}
    for b in bad:
        statuses[b["status"]] = statuses.get(b["status"], 0) + 1
    fivexx = [b for b in bad if b["status"] >= 500]
    body = (
        f"`recranker serve {args.run}` (transformers backend, float32, the run's tuned model; batching window 10 ms, "
        f"at most 16 requests a batch, queue 64), one process on this machine, the clients (async httpx) on the "
        f"same 2 cores, nothing else running. Each request: a test user's {args.history} most recent rated items "
        f"before their test target and the run's {m} backbone candidates; the run's tuned tasks. "
        f"{args.duration:.0f} s per level.\n\n" + "\n".join(lines)
        + f"\n\nBad requests: {len(bad)} malformed or hostile bodies; answers by status: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
        + f"; 5xx: {len(fivexx)}; /healthz afterwards: {'200' if alive else 'DOWN'}.\n\n"
        + "| request | status | error |\n|---|---|---|\n"
        + "\n".join(f"| {b['what']} | {b['status']} | {str(b['error'])[:90].replace('|', '/')} |" for b in bad)
    )
    print(body)
    if args.write:
        write_section("serve", body, "python bench/serve.py --run " + str(args.run)
                      + f" --duration {args.duration:g} --concurrency {' '.join(map(str, args.concurrency))}")


if __name__ == "__main__":
    main()
