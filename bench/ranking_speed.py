"""Benchmark: seconds per user of LLM ranking, every backend side by side, with accuracy gates.

Every row ranks the same users' candidates (ML-100K, LightGCN's top 10, test users whose target is
among them) with the same model and the same prompts (`LLMRanker`, all three tasks, hints, adjacent
pairs in both orders: 10 pointwise + 18 pairwise + 1 listwise prompt per user). Only the backend
differs:

- naive: every prompt on its own, `model.generate` with greedy decoding until the answer ends
  (2 tokens for a rating or Yes/No, up to 24 for a listwise answer), first-step scores kept;
- today's: `TransformersBackend` (each user's prefix computed once, suffixes batched across users,
  last-position logits only) in float32 with PyTorch's default matrix products (MKL);
- improved transformers: the same backend, float32 with the linear layers on oneDNN
  (`use_onednn_linears`, what float32 ranking uses on a CPU), the same without shared stems
  (`fp32ns`: `share_stems=False`, each suffix computed whole on its prefix), with grouped-head attention
  (`fp32g`, bench only: `grouped_sdpa_attention`), in bfloat16, and in bfloat16-mlp
  (only the MLP blocks' products in bfloat16; `bf16mlpf`, bench only: with each block's gate and up
  projections as one product, `BF16MLP`); the row of the dtype `ranking.dtype: auto` resolves
  to on this machine is marked `(default)`;
- vLLM (fp32, bf16): `VLLMBackend`, automatic prefix caching, run by the interpreter of an
  environment that has vLLM (`--vllm-python`, e.g. .venv-vllm/bin/python from `.ci/vllm`).

Per row: s/user, prompt and computed tokens per user, prompt tokens per CPU-second, computed
tokens/s beside the measured forward limit of the same model and dtype (plain batched forward
passes of whole prompts, 4 per batch, last-position logits) and their ratio; and the accuracy
gates against today's float32 outputs: mean |change| of expected ratings and of P(Yes), and the
default hybrid's HR@3 / NDCG@3 on these users. Writes the section "ranking-speed" of
BENCHMARKS.md (with --write).

    python bench/ranking_speed.py [--users 100] [--naive-users 6] [--vllm-python .venv-vllm/bin/python] [--write]
    python bench/ranking_speed.py --model runs/ml-100k-cpu/tune/main/merged --rows today,bf16   # gates of a tuned model
    python bench/ranking_speed.py ... --profile 8   # and where each row's time goes, operator by operator
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

from recranker.config import StudyConfig, load_config  # noqa: E402
from recranker.ranking.backend import (BF16Linear, Backend, OneDNNLinear, Output, TransformersBackend,  # noqa: E402
                                      Usage, stop_token_ids, use_bf16_linears, use_onednn_linears)
from recranker.ranking.config import MIXED_DTYPE, RankingConfig  # noqa: E402
from recranker.ranking.llm import LLMRanker, RankerOutputs  # noqa: E402
from recranker.report import markdown_table  # noqa: E402


class NaiveBackend(Backend):
    """One `generate` call per prompt, nothing shared."""

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer, self.usage = model, tokenizer, Usage()
        self.stop = sorted(stop_token_ids(tokenizer))

    @torch.inference_mode()
    def run(self, requests, token_ids):
        started, outputs = time.perf_counter(), []
        for r in requests:
            ids = self.tokenizer(r.text, add_special_tokens=False, return_tensors="pt").input_ids
            out = self.model.generate(ids, max_new_tokens=max(2, r.max_new_tokens), do_sample=False,
                                      eos_token_id=self.stop, pad_token_id=self.tokenizer.pad_token_id,
                                      output_scores=True, return_dict_in_generate=True)
            new = out.sequences[0, ids.shape[1]:]
            logprobs = torch.log_softmax(out.scores[0][0].float(), -1)[list(token_ids)].numpy()
            text = self.tokenizer.decode(new, skip_special_tokens=True) if r.max_new_tokens else None
            self.usage.prompt_tokens += ids.shape[1]
            self.usage.computed_tokens += ids.shape[1]
            self.usage.generated_tokens += len(new)
            outputs.append(Output(logprobs, text))
        self.usage.seconds += time.perf_counter() - started
        return outputs


def setting(args):
    """(config with `args.model` as the ranking model, split, candidates of the first `args.users`
    covered test users, hint models)."""
    from recranker import stages

    default = Path("configs") / f"{args.name}.yaml"
    cfg = load_config(args.config or default) if (args.config or default.exists()) else StudyConfig(name=args.name)
    # every covered test user can be benchmarked (the config may sample test users)
    cfg = cfg.model_copy(update={"ranking": cfg.ranking.model_copy(update={"model": args.model, "test_users": None})})
    split = stages.prepare_split(cfg)
    candidates = stages.llm_candidates(cfg, split, "lightgcn", "test").select(slice(None, args.users))
    return cfg, split, candidates, stages.full_hint_models(cfg, split, progress=False)


def rank(backend: Backend, cfg, split, hints, candidates, *, generate: bool = False,
         warm_up: bool = True) -> tuple[RankerOutputs, float]:
    """The outputs on `candidates` and the seconds they took (after a warm-up on two other users
    unless `warm_up` is False)."""
    from recranker import stages

    rcfg = cfg.ranking.model_copy(update={"arms": [], "bootstrap": 1, "tune_weights": False, "generate": generate})
    renderer = cfg.renderer(split.dataset, backend.tokenizer)
    ranker = LLMRanker(backend, renderer, split, hints, rcfg)
    if warm_up:
        ranker.rank(stages.llm_candidates(cfg, split, "lightgcn", "valid").select(slice(-2, None)), "valid", progress=False)
    backend.usage = Usage()
    started = time.perf_counter()
    out = ranker.rank(candidates, "test", progress=False)
    return out, time.perf_counter() - started


def profile_shares(backend: Backend, cfg, split, hints, candidates, top: int = 10) -> dict[str, float]:
    """Where the time of ranking `candidates` goes: each operator's share of the self CPU time under
    torch.profiler (the `top` largest, the rest as "other"). The profiler's own overhead falls on the
    many small operators, so shares, not seconds, are what to read."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        rank(backend, cfg, split, hints, candidates, warm_up=False)  # the row's model is warm already
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values()) or 1.0
    ranked = sorted(self_us.items(), key=lambda kv: -kv[1])
    shares = {name: us / total for name, us in ranked[:top]}
    shares["other"] = sum(us for _, us in ranked[top:]) / total
    return shares


def bench_model(spec: str, dtype: torch.dtype | str, onednn: bool) -> tuple:
    """(tokenizer, model) of `spec` in `dtype` (or a `ranking.dtype` name), in eval mode, its linear
    layers on oneDNN when asked."""
    from recranker.ranking.engine import ready_for_ranking
    from recranker.tuning.model import load_causal_lm

    tokenizer, model = load_causal_lm(spec)
    if dtype == "float32-grouped":  # bench only: float32 as ranked, attention with grouped key/value heads
        model = ready_for_ranking(model, "float32")
        use_grouped_attention(model)
        return tokenizer, model
    if dtype == "bfloat16-mlp-fused":  # bench only: bfloat16-mlp with each MLP block's gate and up products as one
        use_bf16_mlp(model)
        use_onednn_linears(model)
        return tokenizer, model.eval()
    if dtype == "bfloat16-linears":  # bench only: every linear layer's product in bfloat16 but the head's
        use_bf16_linears(model, within=None)
        return tokenizer, model.eval()
    if isinstance(dtype, str):
        return tokenizer, ready_for_ranking(model, dtype)
    model = model.to(dtype).eval()
    if onednn:
        use_onednn_linears(model)
    return tokenizer, model


class BF16MLP(torch.nn.Module):
    """Bench only (no faster: BENCHMARKS "ranking-speed-default"). A gated MLP block
    (`down(act(gate(x)) * up(x))`, as Llama's) computed as `use_bf16_linears` computes it, the gate
    and up projections' products in bfloat16, their outputs and the gating in
    float32, the down projection's product in bfloat16, but with the gate and up projections as one
    product (their weights stacked) and the input rounded to bfloat16 once: the same values up to the
    order of the kernel's float32 sums."""

    def __init__(self, mlp: torch.nn.Module) -> None:
        super().__init__()
        gate, up = mlp.gate_proj, mlp.up_proj
        self.width = gate.weight.shape[0]
        weight = torch.cat([gate.weight.detach(), up.weight.detach()]).to(torch.bfloat16)
        self.weight = torch.nn.Parameter(weight, requires_grad=False)  # (2 I, d)
        bias = None
        if gate.bias is not None or up.bias is not None:
            bias = torch.cat([b.detach() if b is not None else torch.zeros(self.width, dtype=gate.weight.dtype)
                              for b in (gate.bias, up.bias)]).to(torch.bfloat16)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
        self.act_fn = mlp.act_fn
        self.down_proj = mlp.down_proj if isinstance(mlp.down_proj, BF16Linear) else BF16Linear(mlp.down_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = torch.nn.functional.linear(x.to(torch.bfloat16), self.weight, self.bias).split(self.width, dim=-1)
        return self.down_proj(self.act_fn(gate.to(x.dtype)) * up.to(x.dtype))


def use_bf16_mlp(model: Any) -> int:
    """`use_bf16_linears(model)` (the MLP blocks' products in bfloat16), with each gated MLP block
    whose output `BF16MLP` reproduces (checked on a random input when it is replaced) computed by
    `BF16MLP`; returns how many linear layers compute in bfloat16."""
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if not all(type(getattr(child, n, None)) in (torch.nn.Linear, OneDNNLinear)
                       and getattr(child, n).weight.dtype == torch.float32 for n in ("gate_proj", "up_proj", "down_proj")) \
                    or not hasattr(child, "act_fn"):
                continue
            fused = BF16MLP(child)
            use_bf16_linears(child, within=None, skip=())  # the unfused reference, and the fallback
            probe = torch.randn(2, 3, child.gate_proj.weight.shape[1], device=fused.weight.device)
            with torch.no_grad():
                expected = child(probe)  # a block that computes otherwise errs by O(1), bfloat16's sums by < 1%
                if float((fused(probe) - expected).norm() / expected.norm()) < 1e-2:
                    setattr(module, name, fused)
            replaced += 3
    return replaced + use_bf16_linears(model)


GROUPED_SDPA = "bench_grouped_sdpa"


def grouped_sdpa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                           **kwargs):
    """transformers' SDPA attention, but under a mask with grouped key/value heads the kernel reads
    each key/value head for its group of query heads (`enable_gqa`) instead of transformers first
    copying the keys and values once per query head (`repeat_kv`, what it does on a CPU whenever
    there is a mask). Bitwise the same outputs; 40% less time in the attention kernel at the
    ranker's suffix shapes, but no measurable end-to-end gain (BENCHMARKS "grouped-attention"), so
    it is a bench row, not the default."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if attention_mask is None or groups == 1 or query.shape[2] == 1 or dropout or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling,
                                                           enable_gqa=True)  # (B, H, S, D)
    return out.transpose(1, 2).contiguous(), None


def use_grouped_attention(model) -> None:
    """Switch `model` (SDPA attention) to `grouped_sdpa_attention`, registered once with SDPA's masks."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    if GROUPED_SDPA not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionInterface.register(GROUPED_SDPA, grouped_sdpa_attention)
        AttentionMaskInterface.register(GROUPED_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    model.set_attn_implementation(GROUPED_SDPA)


def linear_flops_per_token(model) -> float:
    """2 x the weights of the linear layers but the output head: the matrix-product FLOPs of one
    token through the model (attention's own products, ~10% more at these lengths, left out)."""
    return 2.0 * sum(m.weight.numel() for name, m in model.named_modules()
                     if hasattr(m, "weight") and m.weight is not None and m.weight.dim() == 2
                     and name.split(".")[-1] not in ("lm_head", "embed_tokens"))


_PEAKS: dict = {}


def peak_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """The precision of a row's big matrix products, whose machine peak the row is set against:
    bfloat16 for any bfloat16 mode (torch.bfloat16, "bfloat16-mlp", "bfloat16-linears"), else float32."""
    return torch.bfloat16 if "bfloat16" in str(dtype) else torch.float32


@torch.inference_mode()
def peak_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """This machine's matrix-product GFLOP/s in `dtype` (n x n times n x n; oneDNN's kernel for
    float32, the one the default ranking uses), best of `repeats`."""
    if dtype not in _PEAKS:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        if dtype == torch.float32 and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
            product = lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")  # noqa: E731
        else:
            product = lambda: a @ b  # noqa: E731
        product()
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - started)
        _PEAKS[dtype] = 2 * n ** 3 / best / 1e9
    return _PEAKS[dtype]


@torch.inference_mode()
def forward_limit(model, tokenizer, texts: list[str], batch: int = 4) -> float:
    """Tokens/s of plain batched forward passes over whole prompts (left-padded, last-position
    logits), padding excluded: the most the model computes on this machine in this dtype."""
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def one(rows):
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), pad)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, width - len(r):], mask[b, width - len(r):] = torch.tensor(r), 1
        model(input_ids=ids, attention_mask=mask, logits_to_keep=1)

    one(encoded[:batch])
    started = time.perf_counter()
    for start in range(0, len(encoded), batch):
        one(encoded[start:start + batch])
    return sum(map(len, encoded)) / (time.perf_counter() - started)


def vllm_worker(args) -> None:
    """In the vLLM environment: rank with `VLLMBackend` in `args.dtype`, save the outputs and the
    measurements under `args.out`."""
    from recranker import stages
    from recranker.ranking.vllm_backend import VLLMBackend

    cfg, split, candidates, hints = setting(args)
    started = time.perf_counter()
    backend = VLLMBackend(stages.model_folder(cfg, "tuned"), dtype=args.dtype)
    start_s = time.perf_counter() - started
    out, seconds = rank(backend, cfg, split, hints, candidates)
    out.save(Path(args.out) / "outputs.npz")
    (Path(args.out) / "run.json").write_text(json.dumps({"seconds": seconds, "usage": backend.usage.as_dict(),
                                                         "start_s": start_s}))


def gates(reference: RankerOutputs, out: RankerOutputs, cfg, split) -> dict:
    """Mean |change| of expected ratings and P(Yes) against `reference`, and the default hybrid's
    HR@3 / NDCG@3 on the users of `out`."""
    from recranker.metrics import per_user, single_target_gains, summarize
    from recranker.ranking.hybrid import hybrid, utilities
    from recranker.types import Rankings

    ref = reference.select(np.flatnonzero(np.isin(reference.users, out.users)))
    c, top = cfg.ranking.constants, cfg.prompts.listwise_top
    scores = hybrid(utilities(out, c, top, "logits"), cfg.ranking.weights, "logits")
    ranked = Rankings.from_scores(out.users, out.items, scores)
    targets = dict(zip(split.users.tolist(), split.target_items("test").tolist()))
    metrics = summarize(per_user(ranked, single_target_gains(out.users, [targets[int(u)] for u in out.users]),
                                 ["HR@3", "NDCG@3"]))
    first = out.list_logprob[:, 0].argmax(-1) == ref.list_logprob[:, 0].argmax(-1)
    return {"mean |d E[rating]|": float(np.nanmean(np.abs(out.point - ref.point))),
            "mean |d P(Yes)|": float(np.nanmean(np.abs(out.pair_yes - ref.pair_yes))),
            "same first listwise pick": float(first.mean()),
            "hybrid HR@3": metrics["HR@3"], "hybrid NDCG@3": metrics["NDCG@3"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="ml-100k-cpu", help="run with a finished lightgcn retrieval stage")
    parser.add_argument("--config", help="the run's config (default: configs/<name>.yaml when it exists)")
    parser.add_argument("--model", default="smollm2-135m", help="the LLM (default: the untuned default model)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--naive-users", type=int, default=6, help="users for the naive loop (the first of the others)")
    parser.add_argument("--vllm-python", help="python of an environment with vLLM and recranker (vLLM rows)")
    parser.add_argument("--rows", default="naive,today,fp32,bf16,bf16mlp",
                        help="transformers rows, in order (naive, today, fp32, fp32ns: fp32 without shared stems, "
                        "fp32g, bf16, bf16l: bfloat16 linear layers, the rest float32; bf16mlp: only the MLP's; bf16mlpf: the same "
                        "with gate and up as one product; bf16mlpu: with passes unbounded by ranking.cache_tokens); the "
                        "first two are the references; a row named again is run again (interleaved repeats)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after each transformers row, rank its first N users again under torch.profiler and "
                        "report each operator's share of the CPU time (0: no profile)")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--section", default="ranking-speed", help="the section of BENCHMARKS.md to write")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.worker == "vllm":
        return vllm_worker(args)
    cfg, split, candidates, hints = setting(args)
    texts = []
    runs: dict[str, dict] = {}

    def transformers_row(name: str, dtype: torch.dtype, onednn: bool, naive: bool = False, stems: bool = True,
                         cache_tokens: int = RankingConfig().cache_tokens) -> None:
        tokenizer, model = bench_model(args.model, dtype, onednn)
        backend = NaiveBackend(model, tokenizer) if naive else TransformersBackend(model, tokenizer, share_stems=stems,
                                                                                   cache_tokens=cache_tokens)
        subset = candidates.select(slice(None, args.naive_users)) if naive else candidates
        out, seconds = rank(backend, cfg, split, hints, subset, generate=naive)
        if not texts:
            recorder = Recorder(tokenizer)
            rank(recorder, cfg, split, hints, candidates.select(slice(None, 2)))
            texts.extend(r.text for r in recorder.requests[:48])
        limit = None if naive else forward_limit(model, tokenizer, texts)
        repeat = sum(n == name or n.startswith(name + " (run ") for n in runs)
        name = name if not repeat else f"{name} (run {repeat + 1})"  # a row asked again: interleaved repeats
        runs[name] = {"out": out, "seconds": seconds, "usage": backend.usage.as_dict(), "limit": limit,
                      "flops_per_token": linear_flops_per_token(model),
                      "peak": peak_gflops(peak_dtype(dtype))}
        if args.profile and not naive:
            runs[name]["profile"] = profile_shares(backend, cfg, split, hints, candidates.select(slice(None, args.profile)))
        print(name, f"{seconds / len(out):.2f} s/user", flush=True)

    rows = {"naive": ("naive: generate per prompt, fp32", torch.float32, False, True),
            "today": ("today's: transformers, fp32 (MKL matmuls)", torch.float32, False, False),
            "fp32": ("improved transformers, fp32 (oneDNN linears)", torch.float32, True, False),
            "fp32ns": ("improved transformers, fp32 (oneDNN linears, no shared stems: each suffix whole on its prefix)",
                       torch.float32, True, False, False),
            "fp32g": ("improved transformers, fp32 (oneDNN linears, grouped-head attention: bench only)",
                      "float32-grouped", False, False),
            "bf16": ("improved transformers, bf16", torch.bfloat16, False, False),
            "bf16l": ("improved transformers, bf16 linear layers, the rest fp32", "bfloat16-linears", False, False),
            "bf16mlp": ("improved transformers, bf16 MLP layers, the rest fp32 (ranking.dtype: bfloat16-mlp)", "bfloat16-mlp", False,
                        False),
            "bf16mlpu": ("improved transformers, bf16 MLP layers, the rest fp32, suffix and stem passes unbounded by "
                         "ranking.cache_tokens", "bfloat16-mlp", False, False, True, 1 << 30),
            "bf16mlpf": ("improved transformers, bf16 MLP layers, gate and up as one product, the rest fp32",
                         "bfloat16-mlp-fused", False, False)}
    default = {"float32": "fp32", MIXED_DTYPE: "bf16mlp", "bfloat16": "bf16"}[RankingConfig().resolved_dtype("cpu")]
    for key in args.rows.split(","):
        name, *rest = rows[key]
        transformers_row(name + (" (default)" if key == default else ""), *rest)
    for dtype in ("float32", "bfloat16") if args.vllm_python else ():
        with tempfile.TemporaryDirectory() as tmp:
            command = [args.vllm_python, __file__, "--worker", "vllm", "--dtype", dtype, "--out", tmp, "--name", args.name,
                       "--model", args.model, "--users", str(args.users)] + (["--config", args.config] if args.config else [])
            subprocess.run(command, check=True, env={**__import__("os").environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
            run = json.loads((Path(tmp) / "run.json").read_text())
            runs[f"vLLM, {'fp32' if dtype == 'float32' else 'bf16'} (engine start {run['start_s']:.0f} s)"] = {
                "out": RankerOutputs.load(Path(tmp) / "outputs.npz"), "seconds": run["seconds"], "usage": run["usage"],
                "limit": None}
    print(report(runs, cfg, split))
    if args.write:
        write_section(args.section, report(runs, cfg, split), shlex.join(["python", "bench/ranking_speed.py", *sys.argv[1:]]))


class Recorder(Backend):
    """Keeps the requests it is sent (to measure the forward limit on the same prompts)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.usage, self.requests = tokenizer, Usage(), []

    def run(self, requests, token_ids):
        self.requests += list(requests)
        return [Output(np.zeros(len(token_ids), np.float32), "" if r.max_new_tokens else None) for r in requests]


def report(runs: dict, cfg, split) -> str:
    names = list(runs)
    naive = [n for n in names if n.startswith("naive")]
    naive_s = runs[naive[0]]["seconds"] / len(runs[naive[0]]["out"]) if naive else None
    reference = runs[[n for n in names if not n.startswith("naive")][0]]["out"]  # the first fp32 backend row
    threads = torch.get_num_threads()
    rows = []
    for name, run in runs.items():
        n, u = len(run["out"]), run["usage"]
        s = run["seconds"] / n
        computed = u["computed_tokens"] / run["seconds"]
        row = {"backend": name, "users": n, "s/user": f"{s:.2f}", "speed-up vs naive": f"{naive_s / s:.1f}x" if naive_s else "-",
               "prompt tokens/user": f"{u['prompt_tokens'] / n:.0f}", "computed tokens/user": f"{u['computed_tokens'] / n:.0f}",
               "prompt tokens per CPU-s": f"{u['prompt_tokens'] / run['seconds'] / threads:.0f}",
               "computed tokens/s": f"{computed:.0f}",
               "forward limit tokens/s": "-" if run["limit"] is None else f"{run['limit']:.0f}",
               "of limit": "-" if run["limit"] is None else f"{computed / run['limit']:.0%}"}
        if run.get("peak"):
            achieved = computed * run["flops_per_token"] / 1e9
            row.update({"linear GFLOP/s": f"{achieved:.0f}", "machine peak GFLOP/s": f"{run['peak']:.0f}",
                        "of peak": f"{achieved / run['peak']:.0%}"})
        row.update({k: f"{v:.2g}" if k.startswith("mean") else f"{v:.4f}"
                    for k, v in gates(reference, run["out"], cfg, split).items()})
        rows.append(row)
    return (f"Model: {cfg.ranking.model}; {cfg.data.format}, LightGCN's top 10, test users whose target is a "
            f"candidate; all three tasks with hints, 10 pointwise + 18 pairwise (9 adjacent pairs, both orders) + 1 "
            f"listwise prompt per user, listwise order from one pass's identifier logits (the naive loop generates "
            f"every answer); torch threads {threads}; machine otherwise idle. Gates: against the first backend row's outputs (fp32) on "
            f"the same users (targets: mean |d E[rating]| < 0.02, mean |d P(Yes)| < 0.01, the first listwise pick the "
            f"same for >= 95% of users); hybrid with the default weights. `linear GFLOP/s`: computed tokens/s x 2 x the "
            f"linear layers' weights (the output head and attention's own products left out); `machine peak GFLOP/s`: "
            f"a 2048^3 matrix product in the row's precision on this machine (oneDNN for float32), best of 10.\n\n{markdown_table(rows)}\n"
            + profile_table(runs))


def profile_table(runs: dict) -> str:
    """Each profiled row's operators by share of its self CPU time (empty without --profile)."""
    profiled = {name: run["profile"] for name, run in runs.items() if run.get("profile")}
    if not profiled:
        return ""
    operators = sorted({op for shares in profiled.values() for op in shares if op != "other"},
                       key=lambda op: -max(shares.get(op, 0.0) for shares in profiled.values())) + ["other"]
    rows = [{"operator": f"`{op}`" if op != "other" else "other",
             **{name: f"{shares[op]:.1%}" if op in shares else "-" for name, shares in profiled.items()}}
            for op in operators]
    return ("\nWhere each row's time goes: its first users ranked again under torch.profiler, each operator's share "
            "of the self CPU time (the 10 largest per row; `-`: not among them):\n\n" + markdown_table(rows) + "\n")


if __name__ == "__main__":
    main()
