"""Where does reduced precision's error come from? Layer by layer against float32, on real prompts.

For a finished run's tuned model and the prompts the study sends its covered validation users
(`LLMRanker.prompts`: pointwise, pairwise and listwise, hints as configured), every prompt is
computed whole once per precision mode, and compared with the float32 reference (the default:
float32 weights, oneDNN linears):

- per layer: the relative error ||h - h_fp32|| / ||h_fp32|| of the residual stream after each
  decoder layer at the answer position (the last prompt token), mean over prompts (the last row
  is after the final norm);
- at the decision: mean |change| of the expected rating (pointwise prompts), of P(Yes)
  (pairwise) and the share of listwise prompts whose first pick (the identifier with the highest
  logit) is the same;
- speed: prompt tokens per second of these whole-prompt forwards, one prompt at a time (a
  relative figure between modes; the study's backend shares prefixes and batches).

Modes: `bf16` (weights and activations bfloat16: today's opt-in), `bf16-head32` (bfloat16 but for the output
head, float32 from the final norm's bfloat16 output), `bf16-linears` (the linear
layers' weights and products in bfloat16, everything else float32: `BF16Linear`; the output
head float32), `bf16-linears-head` (the same, the head in bfloat16 too), `autocast` (float32 weights and
residual stream, matrix products in bfloat16 under `torch.autocast`), `autocast-head32` (the same
with the output head in float32), `onednn-bf16` (float32, oneDNN allowed to compute float32
matrix products in bfloat16: `torch.backends.mkldnn.matmul.fp32_precision`), `int8` (dynamic int8
quantisation of the linear layers, `torch.ao.quantization.quantize_dynamic`: per-tensor weights,
the output head too), `int8-mlp` (per-channel int8 weights, dynamic int8 activations, only the
MLP blocks' three products; the rest float32), `int8-gateup` (the same for the gate and up
projections only, whose input is the normed residual stream; the down projection's input carries
the MLP's large outlier channels), `int8-gateup-sq` (`int8-gateup` after SmoothQuant's exact
rescaling, alpha 0.8: each input channel of gate and up divided by s_j in the norm's weight and
multiplied back into the weights, s_j = max|x_j|^0.8 / max|w_j|^0.2, with max|x_j| calibrated on
the float32 pass over **these same prompts**: the best case for it).

`--kernels` first prints each precision's matrix-product throughput at the MLP's shape (1,024
tokens x 576 -> 1,536, best of 20): float32 on oneDNN, bfloat16, dynamic int8 (fbgemm).

    python bench/precision_layers.py --run runs/control-positive-e4 [--users 8] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

from recranker.config import load_config  # noqa: E402
from recranker.ranking.backend import TransformersBackend, use_bf16_linears, use_onednn_linears  # noqa: E402
from recranker.ranking.llm import _softmax  # noqa: E402
from recranker.report import markdown_table  # noqa: E402
from recranker.stages import full_hint_models, prepare_split  # noqa: E402
from recranker.stages.models import load_ranking_model  # noqa: E402
from recranker.stages.population import llm_candidates  # noqa: E402

MODES = ["fp32", "bf16", "bf16-head32", "bf16-linears", "bf16-linears-head", "autocast", "autocast-head32", "onednn-bf16", "int8",
         "int8-mlp", "int8-gateup", "int8-gateup-sq"]
#: SmoothQuant's migration strength (0: all of an outlier's scale kept in the activation, 1: all moved
#: into the weights); 0.8 erred least of 0.5 and 0.8 on 58 prompts of the ML-1M study's tuned model
SMOOTH_ALPHA = 0.8


class Float32Head(torch.nn.Module):
    """An output head computed in float32 from a lower-precision model's last hidden state."""

    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(head.weight.detach().float().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return torch.nn.functional.linear(x.float(), self.weight)


@contextlib.contextmanager
def recording_absmax(model):
    """While inside, every forward pass of `model` records per decoder layer the largest |value| of
    each channel of the MLP's input (the post-attention norm's output) over its tokens; yields the
    list, (d,) per layer, filled in place (a deep copy of `model` records too: hooks are copied)."""
    seen: list[torch.Tensor | None] = [None] * len(model.model.layers)

    def hook(index: int):
        def record(module, inputs, output) -> None:
            now = output.detach().float().abs().amax(dim=(0, 1))  # (d,)
            seen[index] = now if seen[index] is None else torch.maximum(seen[index], now)
        return record

    hooks = [layer.post_attention_layernorm.register_forward_hook(hook(i)) for i, layer in enumerate(model.model.layers)]
    try:
        yield seen
    finally:
        for h in hooks:
            h.remove()


def input_absmax(model, ids: list[list[int]]) -> list[torch.Tensor]:
    """Per decoder layer, the largest |value| of each channel of the MLP's input over every token of
    the prompts `ids`, each computed whole: (d,) per layer."""
    with recording_absmax(model) as seen, torch.inference_mode():
        for row in ids:
            model(input_ids=torch.tensor([row]), use_cache=False)
    return seen  # type: ignore[return-value]


def smooth_gate_up(model, absmax: list[torch.Tensor], alpha: float = SMOOTH_ALPHA) -> None:
    """SmoothQuant's rescaling of every MLP's input, exact in float32: the post-attention norm's
    weight divided by s (d,), the gate and up projections' input columns multiplied by s."""
    with torch.no_grad():
        for layer, x_max in zip(model.model.layers, absmax):
            mlp = layer.mlp
            w_max = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).abs().amax(0)  # (d,)
            s = (x_max.clamp(min=1e-5) ** alpha / w_max.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)
            layer.post_attention_layernorm.weight.div_(s)
            mlp.gate_proj.weight.mul_(s)
            mlp.up_proj.weight.mul_(s)


def quantize_dynamic(model, spec) -> Any:
    """`torch.ao.quantization.quantize_dynamic` to int8 (deprecated since torch 2.10 in favour of
    torchao, but still the fbgemm kernels of this build; its warnings silenced)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic as quantize

        return quantize(model, spec, dtype=torch.qint8)


def int8_linears(model, names: tuple[str, ...]) -> Any:
    """`model` with the MLP products named in `names` quantised (per-channel int8 weights, dynamic
    int8 activations), the other linear layers on oneDNN in float32."""
    from torch.ao.quantization import per_channel_dynamic_qconfig

    spec = {f"model.layers.{i}.mlp.{name}": per_channel_dynamic_qconfig
            for i in range(len(model.model.layers)) for name in names}
    model = quantize_dynamic(model, spec)
    use_onednn_linears(model)
    return model


def kernel_rows(tokens: int = 1024, d_in: int = 576, d_out: int = 1536, repeats: int = 20) -> list[dict]:
    """GFLOP/s of one linear layer's product at the MLP's shape in float32 (oneDNN), bfloat16 and
    dynamic int8 (the quantised layer as `int8_linears` builds it), best of `repeats`."""
    from torch.ao.quantization import per_channel_dynamic_qconfig

    x, linear = torch.randn(tokens, d_in), torch.nn.Linear(d_in, d_out, bias=False)
    fp32 = torch.nn.Sequential(copy.deepcopy(linear))
    use_onednn_linears(fp32)
    bf16 = copy.deepcopy(linear).to(torch.bfloat16)
    int8 = quantize_dynamic(torch.nn.Sequential(copy.deepcopy(linear)), {"0": per_channel_dynamic_qconfig})
    rows = []
    for name, layer, inp in (("float32 (oneDNN)", fp32, x), ("bfloat16", bf16, x.bfloat16()), ("int8 dynamic", int8, x)):
        best = float("inf")
        with torch.inference_mode():
            layer(inp)
            for _ in range(repeats):
                started = time.perf_counter()
                layer(inp)
                best = min(best, time.perf_counter() - started)
        rows.append({"product": name, "shape": f"{tokens} x {d_in} -> {d_out}", "GFLOP/s": 2 * tokens * d_in * d_out / best / 1e9})
    return rows


def prepared(base, mode: str, absmax: list[torch.Tensor] | None = None):
    """(model, context manager factory) of `mode` from the float32 model `base` (left unchanged);
    `absmax`: the MLP inputs' channel maxima (`input_absmax`) that `int8-gateup-sq` needs."""
    model = copy.deepcopy(base).eval()
    plain = contextlib.nullcontext
    if mode == "fp32":
        use_onednn_linears(model)
        return model, plain
    if mode == "bf16":
        return model.to(torch.bfloat16), plain
    if mode == "bf16-head32":
        head = Float32Head(model.lm_head)
        model = model.to(torch.bfloat16)
        model.lm_head = head
        return model, plain
    if mode in ("bf16-linears", "bf16-linears-head"):
        use_bf16_linears(model, within=None, skip=() if mode == "bf16-linears-head" else ("lm_head",))
        return model, plain
    if mode in ("autocast", "autocast-head32"):
        if mode == "autocast-head32":
            model.lm_head = Float32Head(model.lm_head)
        return model, lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    if mode == "onednn-bf16":  # plain linears: the math mode applies to aten's matrix products

        @contextlib.contextmanager
        def math_mode():
            before = torch.backends.mkldnn.matmul.fp32_precision, torch.get_float32_matmul_precision()
            torch.backends.mkldnn.matmul.fp32_precision = "bf16"
            torch.set_float32_matmul_precision("medium")
            try:
                yield
            finally:
                torch.backends.mkldnn.matmul.fp32_precision = before[0]
                torch.set_float32_matmul_precision(before[1])
        return model, math_mode
    if mode == "int8":
        return quantize_dynamic(model, {torch.nn.Linear}), plain
    if mode == "int8-mlp":
        return int8_linears(model, ("gate_proj", "up_proj", "down_proj")), plain
    if mode in ("int8-gateup", "int8-gateup-sq"):
        if mode == "int8-gateup-sq":
            if absmax is None:
                raise ValueError("int8-gateup-sq needs the MLP inputs' channel maxima (input_absmax)")
            smooth_gate_up(model, absmax)
        return int8_linears(model, ("gate_proj", "up_proj")), plain
    raise ValueError(f"unknown mode {mode!r}")


def forward(model, context, ids: list[list[int]]) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Each prompt's hidden states at its last position (L + 1, d), its last logits (V,), and the
    seconds the forwards took."""
    hidden, logits, seconds = [], [], 0.0
    with torch.inference_mode():
        for row in ids:
            started = time.perf_counter()
            with context():
                out = model(input_ids=torch.tensor([row]), output_hidden_states=True, use_cache=False)
            seconds += time.perf_counter() - started
            hidden.append(np.stack([h[0, -1].float().numpy() for h in out.hidden_states]))
            logits.append(out.logits[0, -1].float().numpy())
    return hidden, logits, seconds


def decisions(logits: list[np.ndarray], tasks: list[str], ranker) -> dict[str, np.ndarray]:
    """Expected ratings, P(Yes) and listwise first picks of the prompts."""
    out: dict[str, list] = {"pointwise": [], "pairwise": [], "listwise": []}
    for z, task in zip(logits, tasks):
        if task == "pointwise":
            out[task].append(float(_softmax(z[ranker.rating_tokens]) @ np.arange(1, 6)))
        elif task == "pairwise":
            out[task].append(float(_softmax(z[ranker.yes_no])[0]))
        else:
            out[task].append(int(np.argmax(z[ranker.identifier_tokens])))
    return {task: np.array(v) for task, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a run folder whose tune/main/ is finished")
    ap.add_argument("--backbone", default="lightgcn")
    ap.add_argument("--users", type=int, default=8, help="covered validation users whose prompts are computed")
    ap.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    ap.add_argument("--section", default="precision-layers")
    ap.add_argument("--kernels", action="store_true", help="first, each precision's product throughput at the MLP's shape")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = load_config(args.run / "tune" / "main" / "config.yaml", migrate=True)
    split = prepare_split(cfg)
    candidates = llm_candidates(cfg, split, args.backbone, "valid")
    candidates = candidates.select(np.arange(min(args.users, len(candidates.users))))
    tokenizer, base = load_ranking_model(cfg, "tuned", train=False)  # float32, adapter merged, plain linears
    base = base.float().eval()
    ranker = cfg.llm_ranker(TransformersBackend(base, tokenizer), split, full_hint_models(cfg, split), "tuned", "valid")
    asked = ranker.prompts(candidates, "valid")
    tasks = [task for task, *_ in asked]
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for *_, text in asked]
    print(f"{len(ids)} prompts ({', '.join(f'{t}: {tasks.count(t)}' for t in dict.fromkeys(tasks))}), "
          f"{sum(map(len, ids))} tokens", flush=True)
    kernels = kernel_rows() if args.kernels else []
    if kernels:
        print(markdown_table(kernels), flush=True)
    # SmoothQuant's calibration maxima: recorded during the float32 pass when it comes first (its
    # time then includes 30 small abs-max reductions a prompt), else by a pass of their own
    calibrate = "int8-gateup-sq" in args.modes
    absmax = input_absmax(base, ids) if calibrate and args.modes[0] != "fp32" else None
    reference = None
    layer_rows, rows = [], []
    for mode in args.modes:
        model, context = prepared(base, mode, absmax)
        with recording_absmax(model) if calibrate and absmax is None else contextlib.nullcontext() as seen:
            hidden, logits, seconds = forward(model, context, ids)
        absmax = seen if absmax is None else absmax
        chosen = decisions(logits, tasks, ranker)
        if reference is None:
            reference = (hidden, chosen)
        ref_hidden, ref_chosen = reference
        errors = np.mean([np.linalg.norm(h - r, axis=1) / np.linalg.norm(r, axis=1) for h, r in zip(hidden, ref_hidden)],
                         axis=0)
        layer_rows.append({"mode": mode, **{f"L{k}" if k < len(errors) - 1 else "final norm": float(e)
                                            for k, e in enumerate(errors) if k > 0}})
        row = {"mode": mode, "prompt tokens/s": sum(map(len, ids)) / seconds}
        for task, key in (("pointwise", "mean |d E[rating]|"), ("pairwise", "mean |d P(Yes)|")):
            if len(chosen[task]):
                row[key] = float(np.abs(chosen[task] - ref_chosen[task]).mean())
        if len(chosen["listwise"]):
            row["same first listwise pick"] = float((chosen["listwise"] == ref_chosen["listwise"]).mean())
        rows.append(row)
        print(json.dumps(row), flush=True)
        del model
    body = (f"Run: `{args.run}` (tuned model), {len(candidates.users)} covered validation users of {args.backbone}, "
            f"{len(ids)} prompts ({', '.join(f'{t}: {tasks.count(t)}' for t in dict.fromkeys(tasks))}), "
            f"{sum(map(len, ids))} prompt tokens; each prompt computed whole, one at a time; torch threads "
            f"{torch.get_num_threads()}; machine otherwise idle.\n\nAt the decision, against fp32:\n\n"
            f"{markdown_table(rows)}\n\nRelative error of the residual stream at the answer position after each "
            f"decoder layer (L1 ... ; the last column after the final norm), mean over prompts:\n\n"
            f"{markdown_table(layer_rows, digits=5)}\n")
    if kernels:
        body = (f"One linear layer's product at the MLP's shape, best of 20 (GFLOP/s):\n\n{markdown_table(kernels)}\n\n"
                + body)
    print(body)
    if args.write:
        write_section(args.section, body, command="python bench/precision_layers.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
