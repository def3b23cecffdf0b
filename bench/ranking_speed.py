"""Benchmark: seconds per user of LLM ranking, ours against a naive loop, side by side.

Both rank the same users' candidates (ML-100K, LightGCN's top 10, users whose test target is
among them) with the same model and the same prompts (`LLMRanker`, all three tasks, hints,
adjacent pairs in both orders). Only the backend differs:

- ours: `TransformersBackend`: each user's shared prefix computed once (KV cache), suffixes
  batched by length across users, only the last position's logits, listwise order from one
  pass's identifier logits (the default hybrid), and again with listwise answers generated;
- naive: every prompt on its own, `model.generate` with greedy decoding until the answer ends
  (2 tokens for a rating or Yes/No, up to 24 for a listwise answer), first-step scores kept.

It also checks that both agree: the expected ratings and P(Yes) of the naive loop's first step
must match ours. Writes the section "ranking-speed" of BENCHMARKS.md (with --write).

    python bench/ranking_speed.py --name ml-100k-cpu [--users 32] [--naive-users 6] [--write]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

from recranker.config import StudyConfig, load_config  # noqa: E402
from recranker.ranking.backend import Backend, Output, TransformersBackend, Usage  # noqa: E402
from recranker.ranking.llm import LLMRanker  # noqa: E402
from recranker.report import markdown_table  # noqa: E402


class NaiveBackend(Backend):
    """One `generate` call per prompt, nothing shared."""

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer, self.usage = model, tokenizer, Usage()
        self.stop = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="ml-100k-cpu", help="run with a finished lightgcn retrieval stage")
    parser.add_argument("--config", help="the run's config (default: configs/<name>.yaml when it exists)")
    parser.add_argument("--users", type=int, default=32, help="users for our backend")
    parser.add_argument("--naive-users", type=int, default=6, help="users for the naive loop (the first of ours)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    from recranker import stages

    default = Path("configs") / f"{args.name}.yaml"
    cfg = load_config(args.config or default) if (args.config or default.exists()) else StudyConfig(name=args.name)
    split = stages.prepare_split(cfg)
    candidates = stages.llm_candidates(cfg, split, "lightgcn", "test")
    candidates = candidates.select(slice(None, args.users))
    tuned = stages.tune_stage(cfg)
    system = "tuned" if tuned.done() else "zero_shot"  # loads, never trains
    tokenizer, model = stages.ModelCache().get(cfg, system)
    which = f"tuned ({tuned.path})" if tuned.done() else f"{cfg.tuning.model} (untuned: no finished tune stage)"
    renderer = stages.prompt_renderer(cfg, split, tokenizer, cfg.ranked_tasks)
    hints = stages.full_hint_models(cfg, split)
    base = cfg.ranking.model_copy(update={"baselines": [], "tune_weights": False})
    runs = {
        "ours, listwise from logits (default hybrid)": (TransformersBackend, base.model_copy(update={"generate": False}), args.users),
        "ours, listwise answers generated": (TransformersBackend, base.model_copy(update={"generate": True}), args.users),
        "naive: generate per prompt": (NaiveBackend, base.model_copy(update={"generate": True}), args.naive_users),
    }
    rows, outputs = [], {}
    for name, (backend_type, rcfg, n) in runs.items():
        backend = backend_type(model, tokenizer)
        ranker = LLMRanker(backend, renderer, split, hints, rcfg)
        subset = candidates.select(slice(None, n))
        warm = candidates.select(slice(-2, None))
        ranker.rank(warm, "test", progress=False)  # warm-up on two users outside the naive loop's
        backend.usage = Usage()
        started = time.perf_counter()
        outputs[name] = ranker.rank(subset, "test", progress=False)
        seconds = time.perf_counter() - started
        u = backend.usage
        rows.append({"backend": name, "users": n, "s/user": seconds / n, "prompt tokens/user": u.prompt_tokens / n,
                     "computed tokens/user": u.computed_tokens / n, "generated tokens/user": u.generated_tokens / n,
                     "forward passes/user": u.forward_passes / n if u.forward_passes else None})
        print(markdown_table(rows[-1:]), flush=True)
    naive = rows[-1]["s/user"]
    for row in rows:
        row["speed-up vs naive"] = f"{naive / row['s/user']:.1f}x"
        row["s/user"] = f"{row['s/user']:.2f}"
        for key in ("prompt tokens/user", "computed tokens/user", "forward passes/user"):
            row[key] = "-" if row[key] is None else f"{row[key]:.0f}"
        row["generated tokens/user"] = f"{row['generated tokens/user']:.1f}"
    ours, slow = outputs["ours, listwise answers generated"], outputs["naive: generate per prompt"]
    n = len(slow)
    agree = {"max |expected rating difference|": float(np.nanmax(np.abs(ours.point[:n] - slow.point))),
             "max |P(Yes) difference|": float(np.nanmax(np.abs(ours.pair_yes[:n] - slow.pair_yes))),
             "same generated listwise order": float((ours.list_rank[:n] == slow.list_rank).all(axis=-1).mean())}
    table = markdown_table(rows)
    body = (f"Model: {which}; ML-100K, LightGCN's top 10, test users whose target is a candidate; all three "
            f"tasks with hints, 10 pointwise + 18 pairwise (9 adjacent pairs, both orders) + 1 listwise prompt "
            f"per user; torch threads {torch.get_num_threads()}.\n\n{table}\n\nAgreement on the naive loop's "
            f"users: " + ", ".join(f"{k} {v:.2g}" for k, v in agree.items()) + "\n")
    print("\n" + body)
    if args.write:
        write_section("ranking-speed", body, "python bench/ranking_speed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
