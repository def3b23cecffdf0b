"""`recranker serve RUN_DIR`: the HTTP rerank service of a finished run (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import math
import os
import socket
from pathlib import Path

from recranker.errors import RecrankerError
from recranker.prompts.render import MAX_CANDIDATES
from recranker.ranking.config import SERVABLE


def serve_command(sub) -> None:
    """Add `serve` to the subcommands."""
    serve = sub.add_parser("serve", help="serve a finished run's reranker over HTTP (POST /v1/rerank)")
    serve.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run folder (or its tune/<variant>)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--backend", default="transformers", choices=["transformers", "vllm", "openai"])
    serve.add_argument("--server-url", help="--backend openai: the completions server serving RUN_DIR/tune/<variant>/merged")
    serve.add_argument("--dtype", choices=["float32", "bfloat16", "bfloat16-mlp", "auto"], help="override ranking.dtype")
    serve.add_argument("--no-hints", action="store_true", help="never show hints, even to users the run knows")
    serve.add_argument("--system", default="validated", choices=["validated", *SERVABLE],
                       help="the system that scores: validated (default: the one the study selected on its validation "
                       "users), or one the study fitted")
    serve.add_argument("--backbone", help="whose fitted systems to serve (default: the run's first backbone)")
    serve.add_argument("--pad-multiple", type=int, default=None,
                       help="pad each batch's width to a multiple of this many tokens: fewer tensor shapes, flat memory "
                       "(default: recranker.serve.reranker.SERVE_PAD_MULTIPLE; 1: no padding)")
    serve.add_argument("--api-key", default=None,
                       help="bearer token /v1/rerank requires (default: $RECRANKER_API_KEY; unset: no auth)")
    serve.add_argument("--batch-window-ms", type=float, default=10.0, help="how long a batch waits for more requests")
    serve.add_argument("--max-batch", type=int, default=16, help="requests per backend call")
    serve.add_argument("--queue-size", type=int, default=64, help="waiting requests before 503")
    serve.add_argument("--max-body-kb", type=int, default=64, help="largest request body (KiB) before 413")
    serve.add_argument("--max-candidates", type=int, default=MAX_CANDIDATES,
                       help=f"candidates per request (at most {MAX_CANDIDATES})")
    serve.add_argument("--max-history", type=int, default=200, help="history entries per request")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from recranker.serve.app import ServeSettings, create_app
    except ImportError as exc:
        raise RecrankerError(f"serving needs the serve extra: pip install 'recranker[serve]' ({exc})") from None
    from recranker.serve import Limits, Reranker

    check_serve_flags(args)
    limits = Limits(max_candidates=args.max_candidates, max_history=args.max_history)
    reranker = Reranker.load(args.run_dir, backend=args.backend, dtype=args.dtype, server_url=args.server_url,
                             hints=not args.no_hints, limits=limits, system=args.system, backbone=args.backbone,
                             pad_multiple=args.pad_multiple)
    settings = ServeSettings(batch_window_ms=args.batch_window_ms, max_batch=args.max_batch, queue_size=args.queue_size,
                             max_body_bytes=args.max_body_kb * 1024,
                             api_key=args.api_key or os.environ.get("RECRANKER_API_KEY") or None)
    print(f"serving {args.run_dir} ({reranker.system}) on http://{args.host}:{args.port} (POST /v1/rerank, "
          f"GET /healthz, GET /metrics; auth {'on' if settings.api_key else 'off'})", flush=True)
    uvicorn.run(create_app(reranker, settings), host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=30)
    return 0


#: flag -> (smallest, largest) value it takes
FLAG_RANGES = {"port": (1, 65535), "batch_window_ms": (0, 60_000), "max_batch": (1, 1024), "queue_size": (1, 100_000),
               "max_body_kb": (1, 1 << 20), "max_candidates": (1, MAX_CANDIDATES), "max_history": (1, 100_000),
               "pad_multiple": (1, 1024)}


def check_serve_flags(args: argparse.Namespace) -> None:
    """Every number flag within its range and the port free, before the model loads: a
    `RecrankerError` naming the first bad flag otherwise (the command exits 2)."""
    for dest, (low, high) in FLAG_RANGES.items():
        value = getattr(args, dest)
        if value is None:  # a flag whose default is decided later
            continue
        if not (math.isfinite(value) and low <= value <= high):
            why = " (the listwise identifiers A-Z)" if dest == "max_candidates" else ""
            raise RecrankerError(f"--{dest.replace('_', '-')}: between {low} and {high}{why}, got {value:g}")
    try:
        with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((args.host, args.port))
    except OSError as exc:
        raise RecrankerError(f"--port {args.port} on --host {args.host}: cannot listen there ({exc.strerror or exc})") from None
