"""Benchmark: `recranker serve` under a long mixed load (soak) and a seeded fuzz of request bodies.

Starts `recranker serve RUN` in a process of its own (loopback only), then:

1. fuzz: `--fuzz` bodies (at least 200), each a real test user's request with one field replaced by
   something odd or hostile (invalid Unicode, wrong types, huge or negative numbers, unknown or
   repeated ids, oversize lists, deep nesting, raw bytes that are not JSON), sent 8 at a time so
   that bad requests share the batching window with good ones: the answers by status, the 5xx
   (must be 0), and whether every good request sent beside them got 200 with the ranking it gets
   alone;
2. soak: 8 clients for `--minutes`, a mix of good requests (70%), odd but valid ones (20%: a new
   free title every time, unusual Unicode, k, scores, task subsets) and hostile ones (10%), back to
   back. The server's resident memory is sampled every 5 s; growth is measured from the end of the
   warm-up (`--warmup` minutes) to the end. Requests, errors, p50/p95 of the good requests, RSS.

    python bench/serve_soak.py --run runs/demo [--minutes 10] [--warmup 2] [--fuzz 240] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

#: the status the script records when the client got no HTTP answer (it raised: a timeout, a reset)
CLIENT_ERROR = 599
from serve import KEY, bodies, serve_on_free_port  # noqa: E402

AUTH = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
#: JSON text of odd values (some valid JSON that no field takes, some with escapes Python reads as lone surrogates)
ODD_VALUES = ['"x\\ud800"', '"\\udfff"', '"\\u0000"', '"\\ufeff"', '""', '" "', "null", "true", "-1", "0", "1e309",
              "-1e309", "9007199254740993", "1.5", '"NaN"', "[]", "{}", "[[]]", '[{"a": 1}]', '"' + "x" * 5000 + '"',
              "[" + ",".join(["1"] * 3000) + "]", '["i"]', '{"item": "1"}', '"\\u202e\\u0635"', '"🎬"']
FIELDS = ["history", "candidates", "scores", "user", "tasks", "k", "history.0.title", "history.0.rating",
          "history.0.item", "candidates.0", "extra"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def mutate(good: dict, rng: random.Random) -> bytes:
    """`good` with one field replaced by an odd value (as raw JSON text), or a body that is not JSON."""
    if rng.random() < 0.15:
        return rng.choice([b"{not json", b"\xff\xfe\x00", b"", b"null", b"[" * 3000 + b"]" * 3000, b'"text"',
                           json.dumps(good).encode()[:-3], b"{" + b'"a":' * 500 + b"1" + b"}" * 500, b"\x00" * 100])
    field, value = rng.choice(FIELDS), rng.choice(ODD_VALUES)
    body = json.loads(json.dumps(good))
    marker = "@@ODD@@"
    parts = field.split(".")
    node = body
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = marker
    else:
        node[last] = marker
    if field == "history.0.title":
        node.pop("item", None)
    return json.dumps(body).replace(f'"{marker}"', value).encode()


def odd_but_valid(good: dict, rng: random.Random, n: int) -> dict:
    """A valid request unlike the study's: a new free title, unusual text, k, scores or tasks."""
    body = json.loads(json.dumps(good))
    choice = rng.randrange(5)
    if choice == 0:
        body["history"] = [{"title": f"Uncatalogued film number {n} ({1950 + n % 70})", "rating": 4}] + body["history"]
    elif choice == 1:
        body["history"] = [{"title": rng.choice(["Amélie (2001)", "千と千尋の神隠し", "🎬🍿 " * 5, "\u202eevil",
                                                  "a\tb\nc"]) + f" {n}", "rating": 5}] + body["history"][:5]
    elif choice == 2:
        body["k"] = rng.randint(1, len(body["candidates"]))
    elif choice == 3:
        body["scores"] = [rng.random() for _ in body["candidates"]]
    else:
        body["tasks"] = [rng.choice(["pointwise", "pairwise", "listwise"])]
        body["history"] = body["history"][: rng.randint(0, len(body["history"]))]
    return body


async def fuzz(url: str, good: list[dict], n: int, seed: int) -> dict:
    """`n` mutated bodies, 8 at a time, each group with good requests beside it."""
    import httpx

    rng = random.Random(seed)
    statuses: dict[int, int] = {}
    good_ok, good_sent, examples = 0, 0, {}
    async with httpx.AsyncClient(timeout=300) as http:
        alone = {}
        for k in range(3):
            response = await http.post(f"{url}/v1/rerank", json=good[k], headers=AUTH)
            alone[k] = [i["item"] for i in response.json()["items"]]
        sent = 0
        while sent < n:
            group = [mutate(good[rng.randrange(len(good))], rng) for _ in range(min(6, n - sent))]
            sent += len(group)
            posts = [http.post(f"{url}/v1/rerank", content=raw, headers=AUTH) for raw in group]
            posts += [http.post(f"{url}/v1/rerank", json=good[k], headers=AUTH) for k in range(2)]
            answers = await asyncio.gather(*posts, return_exceptions=True)
            for raw, answer in zip(group, answers[: len(group)]):
                status = answer.status_code if not isinstance(answer, Exception) else CLIENT_ERROR
                statuses[status] = statuses.get(status, 0) + 1
                why = f"{type(answer).__name__}: " if isinstance(answer, Exception) else ""  # 599: the client's error
                examples.setdefault(status, why + raw[:100].decode("utf-8", "replace"))
            for k, answer in enumerate(answers[len(group):]):
                good_sent += 1
                good_ok += (not isinstance(answer, Exception) and answer.status_code == 200
                            and [i["item"] for i in answer.json()["items"]] == alone[k])
    return {"sent": n, "statuses": dict(sorted(statuses.items())), "good_sent": good_sent, "good_same": good_ok,
            "examples": examples}


async def soak(url: str, pid: int, good: list[dict], minutes: float, warmup: float, clients: int, seed: int) -> dict:
    import httpx

    rng = random.Random(seed)
    stop = time.monotonic() + minutes * 60
    started = time.monotonic()
    latencies, statuses, rss = [], {}, []
    counter = iter(range(10**9))

    async def sample() -> None:
        while time.monotonic() < stop:
            rss.append((time.monotonic() - started, rss_kib(pid)))
            await asyncio.sleep(5)

    async def client(http: httpx.AsyncClient) -> None:
        while time.monotonic() < stop:
            n, roll = next(counter), rng.random()
            base = good[n % len(good)]
            kind = "good" if roll < 0.7 else "odd" if roll < 0.9 else "hostile"
            content = (json.dumps(base).encode() if kind == "good" else json.dumps(odd_but_valid(base, rng, n)).encode()
                       if kind == "odd" else mutate(base, rng))
            t0 = time.perf_counter()
            try:
                response = await http.post(f"{url}/v1/rerank", content=content, headers=AUTH)
                status = response.status_code
            except httpx.HTTPError:
                status = CLIENT_ERROR
            if kind == "good" and status == 200:
                latencies.append(time.perf_counter() - t0)
            key = f"{kind} {status}"
            statuses[key] = statuses.get(key, 0) + 1

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(sample(), *(client(http) for _ in range(clients)))
    after = [kib for t, kib in rss if t >= warmup * 60]
    lat = np.array(latencies)
    return {"minutes": minutes, "clients": clients, "requests": sum(statuses.values()),
            "statuses": dict(sorted(statuses.items())), "fivexx": sum(v for k, v in statuses.items() if 500 <= int(k.split()[1]) < CLIENT_ERROR),
            "client_errors": sum(v for k, v in statuses.items() if int(k.split()[1]) == CLIENT_ERROR),
            "p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p95": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
            "rss_start_mib": rss[0][1] / 1024, "rss_warm_mib": after[0] / 1024 if after else float("nan"),
            "rss_end_mib": rss[-1][1] / 1024, "rss_max_mib": max(k for _, k in rss) / 1024,
            "growth_pct": 100 * (rss[-1][1] - after[0]) / after[0] if after else float("nan"),
            "rss": [(round(t), round(k / 1024, 1)) for t, k in rss]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--fuzz", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--section", default="serve-soak", help="the BENCHMARKS.md section --write replaces")
    parser.add_argument("--pad-multiple", type=int, help="the server's --pad-multiple (default: its own)")
    args = parser.parse_args()
    good = bodies(args.run, 100, 30)
    extra = () if args.pad_multiple is None else ("--pad-multiple", str(args.pad_multiple))
    url, process = serve_on_free_port(args.run, extra)
    try:
        fuzzed = asyncio.run(fuzz(url, good, args.fuzz, args.seed))
        print(json.dumps({k: v for k, v in fuzzed.items() if k != "examples"}), flush=True)
        soaked = asyncio.run(soak(url, process.pid, good, args.minutes, args.warmup, args.clients, args.seed))
        print(json.dumps({k: v for k, v in soaked.items() if k != "rss"}), flush=True)
        import httpx

        alive = httpx.get(f"{url}/healthz").status_code
    finally:
        process.terminate()
        process.wait(60)
    write_report(args, fuzzed, soaked, alive)


def write_report(args, fuzzed: dict, soaked: dict, alive: int) -> None:
    fuzz_statuses = ", ".join(f"{k}: {v}" for k, v in fuzzed["statuses"].items())
    fuzz_5xx = sum(v for k, v in fuzzed["statuses"].items() if 500 <= k < CLIENT_ERROR)
    client = fuzzed["statuses"].get(CLIENT_ERROR, 0)
    client_note = (f" ({client} with no HTTP answer: the client raised {fuzzed['examples'].get(CLIENT_ERROR)!r})"
                   if client else "")
    body = (
        f"`recranker serve {args.run}` (transformers backend, float32, batching window 10 ms, at most 16 a batch, "
        f"queue 64, batch widths padded to a multiple of {args.pad_multiple or 'SERVE_PAD_MULTIPLE'}) on loopback; "
        "the clients (async httpx) on the same 2 cores.\n\n"
        f"**Fuzz** (seed {args.seed}): {fuzzed['sent']} bodies, each a real request with one field made odd or hostile "
        "(invalid Unicode such as lone surrogates, wrong types, 1e309, 3,000-item lists, 5,000-character titles, "
        "unknown or repeated ids, bodies that are not JSON), sent 6 at a time with 2 good requests in the same "
        f"batching window. Answers by status: {fuzz_statuses}; **5xx: {fuzz_5xx}**{client_note}. Good requests sent beside "
        f"them: {fuzzed['good_same']} of {fuzzed['good_sent']} got 200 with the ranking they get alone.\n\n"
        f"**Soak**: {soaked['clients']} clients back to back for {soaked['minutes']:g} minutes: 70% good requests "
        "(real test users), 20% odd but valid (a new free title each time, unusual Unicode, k, scores, one task), "
        "10% hostile (as the fuzz).\n\n"
        "| requests | 5xx | good p50 s | good p95 s | RSS start MiB | RSS after warm-up MiB | RSS end MiB | "
        "RSS max MiB | growth after warm-up |\n|---|---|---|---|---|---|---|---|---|\n"
        f"| {soaked['requests']} | {soaked['fivexx']} | {soaked['p50']:.2f} | {soaked['p95']:.2f} | "
        f"{soaked['rss_start_mib']:.0f} | {soaked['rss_warm_mib']:.0f} | {soaked['rss_end_mib']:.0f} | "
        f"{soaked['rss_max_mib']:.0f} | {soaked['growth_pct']:+.2f}% |\n\n"
        "Answers by kind and status: " + ", ".join(f"{k}: {v}" for k, v in soaked["statuses"].items())
        + f". /healthz afterwards: {alive}. RSS (s, MiB) every 5 s: "
        + " ".join(f"{t}:{m:.0f}" for t, m in soaked["rss"][:: max(1, len(soaked['rss']) // 24)]) + "."
    )
    print(body)
    if args.write:
        pad = "" if args.pad_multiple is None else f" --pad-multiple {args.pad_multiple}"
        write_section(args.section, body, f"python bench/serve_soak.py --run {args.run} --minutes {args.minutes:g} "
                      f"--warmup {args.warmup:g} --fuzz {args.fuzz}{pad} --section {args.section}")


if __name__ == "__main__":
    main()
