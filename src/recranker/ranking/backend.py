"""LLM backends of the ranker: next-token log-probabilities, and short greedy answers, for many
prompts at once.

The ranker asks a backend for `Request`s: a prompt's full text, the group it belongs to (one
user) and how many tokens to generate (0: only the next-token distribution). For every request the
backend returns the log-probabilities of the next token over the whole vocabulary, read at the
asked token ids (rating digits, Yes/No, listwise identifiers), and the greedy continuation when
asked for one.

`TransformersBackend` (CPU or GPU) does the work a naive loop would repeat only once:

- the tokens every prompt of a group starts with (system text and the user's history, about 300
  tokens) are computed once per group, and their keys and values (a KV cache) serve all of the
  group's prompts; only each prompt's own suffix (the question, ~20-40 tokens) is computed after;
- within a group, the opening tokens that several suffixes share (a task's question stem, e.g.
  `How would the user rate "` for each of 10 pointwise prompts) are computed once too, on the
  group's cache, and serve those suffixes (about 10% of the computed tokens of a hybrid user);
- groups are processed several at a time and suffixes are batched across groups, sorted by length
  (left padding, so the next-token position is the last column of every row);
- only the last position's logits are computed (`logits_to_keep=1`), never the ~49k-way logits of
  every prompt token;
- greedy answers are decoded for all generating rows of a batch together, reusing the cache.
"""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Request:
    """One prompt: its full text (chat template applied, ending where the answer starts), its group
    (prompts of one group share a prefix, e.g. one user's) and how many tokens to generate."""

    text: str
    group: int
    max_new_tokens: int = 0


@dataclass(frozen=True)
class Output:
    """The answer to one `Request`: `logprobs[k]` is the log-probability (full-vocabulary softmax)
    that the next token is the k-th asked token id; `text` the greedy continuation (None when no
    token was asked for)."""

    logprobs: np.ndarray
    text: str | None = None


@dataclass
class Usage:
    """What a backend has done so far: prompt tokens asked, tokens actually computed (shared
    prefixes once, no padding), generated tokens, forward passes and seconds."""

    prompt_tokens: int = 0
    computed_tokens: int = 0
    generated_tokens: int = 0
    forward_passes: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(vars(self))

    def snapshot(self) -> "Usage":
        """A copy of the counts now (the backend keeps counting into the original)."""
        return Usage(**vars(self))

    def since(self, before: "Usage") -> "Usage":
        """What was done after `before` (a `snapshot` of these counts): the one way a pass, a Ray
        worker's chunk or the server's batch counts what it cost."""
        return Usage(**{key: value - getattr(before, key) for key, value in vars(self).items()})

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(**{key: value + getattr(other, key) for key, value in vars(self).items()})


class Backend(ABC):
    """Anything that answers `Request`s with a model whose `tokenizer` renders the prompts
    (transformers now; vLLM or an OpenAI-compatible server would implement `run` the same way)."""

    usage: Usage
    tokenizer: Any

    @abstractmethod
    def run(self, requests: Sequence[Request], token_ids: Sequence[int]) -> list[Output]:
        """One `Output` per request, in order."""

    def token_id(self, text: str) -> int:
        """The id of `text` when it is one token of the model's vocabulary; ValueError otherwise."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens for this tokenizer; the ranker reads answers that are one token")
        return int(ids[0])


@dataclass
class _Group:
    prefix: list[int]
    rows: list[int] = field(default_factory=list)  # request indices


#: the fewest opening tokens that several suffixes of a group must share to be computed once
#: (`TransformersBackend.share_stems`): below it a stem saves less than its extra pass costs
MIN_STEM = 2


def shared_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of `sequences`, leaving every sequence at least one
    token of its own."""
    shortest = min(len(s) for s in sequences)
    first = sequences[0]
    n = 0
    while n < shortest - 1 and all(s[n] == first[n] for s in sequences):
        n += 1
    return n


def stop_token_ids(tokenizer: Any) -> set[int]:
    """The ids that end an answer: the tokenizer's end of sequence and the chat template's
    <|im_end|>, where the vocabulary has them."""
    return {i for i in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>"))
            if isinstance(i, int) and i >= 0 and i != tokenizer.unk_token_id}


def cache_argument(model: Any) -> str:
    """The name under which `model.forward` takes and returns its KV cache: `cache` since
    transformers renamed it (the old `past_key_values` then warns that it is deprecated), else
    `past_key_values`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


class OneDNNLinear(torch.nn.Module):
    """A `torch.nn.Linear` computed by oneDNN (same weights, same float32 results within ~1e-4):
    on AMD CPUs PyTorch's default float32 matrix product (MKL) runs far below the oneDNN kernels."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


def use_onednn_linears(model: Any) -> int:
    """Replace every float32 `nn.Linear` of `model` (on the CPU, for inference) by `OneDNNLinear`
    when this torch build has the oneDNN kernel; returns how many were replaced (0: unchanged)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return 0
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear and child.weight.dtype == torch.float32 and child.weight.device.type == "cpu":
                setattr(module, name, OneDNNLinear(child))
                replaced += 1
    return replaced


class BF16Linear(torch.nn.Module):
    """A linear layer whose matrix product runs in bfloat16 (weights stored in bfloat16, the input
    rounded to it) and whose output is float32 again, so the residual stream, the norms and the
    attention's own products stay float32 (BENCHMARKS "precision-layers": rounding those, or the
    whole model, moves the answers about twice as much)."""

    def __init__(self, linear: torch.nn.Module) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
        bias = linear.bias
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().to(torch.bfloat16), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x.to(torch.bfloat16), self.weight, self.bias).to(x.dtype)


def use_bf16_linears(model: Any, *, within: str | None = "mlp", skip: tuple[str, ...] = ("lm_head",)) -> int:
    """Replace float32 linear layers of `model` (plain or `OneDNNLinear`) by `BF16Linear`: those
    inside a module named `within` (by default the MLP blocks: rounding the attention's
    projections too moves the answers about twice as much, BENCHMARKS "ranking-precision"), or
    with `within=None` all but those named in `skip`; returns how many were replaced."""
    replaced = 0
    for path, module in list(model.named_modules()):
        inside = within is None or within in path.split(".")
        for name, child in list(module.named_children()):
            if inside and name not in skip and type(child) in (torch.nn.Linear, OneDNNLinear) \
                    and child.weight.dtype == torch.float32:
                setattr(module, name, BF16Linear(child))
                replaced += 1
    return replaced


class TransformersBackend(Backend):
    """A transformers causal LM (a peft model works too) on its device.

    `batch_tokens` bounds the suffix tokens of one forward pass, `cache_tokens` the tokens its rows
    attend to (each row holds a copy of its cached prefix, so this bounds the pass's memory: with
    short suffixes `batch_tokens` alone lets a pass take many rows) and `prefix_tokens` the prefix
    tokens of one prefix pass (all in real tokens, padding excluded); `share_prefix=False`
    computes every prompt whole (for comparisons); `share_stems=False` computes each suffix whole
    on its group's prefix (the suffixes' shared opening tokens once per suffix).
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_tokens: int = 1024, prefix_tokens: int = 4096,
                 cache_tokens: int = 4096, share_prefix: bool = True, share_stems: bool = True) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_tokens, self.prefix_tokens, self.share_prefix = batch_tokens, prefix_tokens, share_prefix
        self.cache_tokens = cache_tokens
        self.share_stems = share_stems and share_prefix
        #: pad every batch's width to a multiple of this (1: no extra padding); a service sets it
        #: higher so that its forward passes take a bounded set of shapes
        self.pad_multiple = 1
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_ids = stop_token_ids(tokenizer)
        self.usage = Usage()
        self.cache_name = cache_argument(model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------------------- public
    @torch.inference_mode()
    def run(self, requests: Sequence[Request], token_ids: Sequence[int]) -> list[Output]:
        started = time.perf_counter()
        encoded = self.tokenizer([r.text for r in requests], add_special_tokens=False)["input_ids"]
        self.usage.prompt_tokens += sum(len(ids) for ids in encoded)
        groups: dict[int, _Group] = {}
        for k, r in enumerate(requests):
            key = r.group if self.share_prefix else -1 - k
            groups.setdefault(key, _Group([])).rows.append(k)
        for g in groups.values():
            g.prefix = encoded[g.rows[0]][: shared_prefix([encoded[k] for k in g.rows])]
        wanted = torch.tensor(list(token_ids), dtype=torch.long)
        outputs: list[Output | None] = [None] * len(requests)
        for chunk in self._chunks(list(groups.values())):
            self._run_chunk(chunk, requests, encoded, wanted, outputs)
        self.usage.seconds += time.perf_counter() - started
        return outputs  # type: ignore[return-value]

    # ----------------------------------------------------------------------------- internals
    def _chunks(self, groups: list[_Group]) -> list[list[_Group]]:
        """Groups in chunks whose left-padded prefix batch holds at most `prefix_tokens` tokens,
        padding included; longest prefixes first, so a chunk's prefixes are of similar length."""
        chunks, current = [], []
        for g in sorted(groups, key=lambda g: -len(g.prefix)):
            if current and (len(current) + 1) * len(current[0].prefix) > self.prefix_tokens:
                chunks.append(current)
                current = []
            current.append(g)
        return chunks + ([current] if current else [])

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any) -> Any:
        self.usage.forward_passes += 1
        return self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                          position_ids=positions.to(self.device), use_cache=True, logits_to_keep=1,
                          **{self.cache_name: cache})

    def _run_chunk(self, chunk: list[_Group], requests, encoded, wanted, outputs) -> None:
        """Answer every request of `chunk`'s groups into `outputs`: one prefix pass over the groups'
        shared prefixes, the suffixes that open with no stem in batches on their prefix, then the
        stems several of a group's suffixes open with, part by part (`_stem_parts`), each part's
        suffixes in batches on their stem (generating rows in batches of their own)."""
        kv, prefix_mask = self._prefix_pass(chunk)
        rows = [(i, k) for i, g in enumerate(chunk) for k in g.rows]  # (group in the chunk, request)
        suffix = {k: encoded[k][len(chunk[i].prefix):] for i, k in rows}
        stems = self._stems(rows, suffix) if self.share_stems else []
        stemmed = {k for _, _, ks in stems for k in ks}
        for _, stem, ks in stems:
            for k in ks:
                suffix[k] = suffix[k][len(stem):]
        self._run_level(kv, prefix_mask, [r for r in rows if r[1] not in stemmed], suffix, requests, wanted, outputs)
        for part in self._stem_parts(stems, prefix_mask.shape[1]):  # one part's stems cached at a time
            stem_kv, stem_mask = self._extend_pass([i for i, _, _ in part], [stem for _, stem, _ in part], kv, prefix_mask)
            self._run_level(stem_kv, stem_mask, [(n, k) for n, (_, _, ks) in enumerate(part) for k in ks], suffix,
                            requests, wanted, outputs)

    def _run_level(self, kv: list | None, mask: torch.Tensor, rows: list[tuple[int, int]], suffix: dict, requests,
                   wanted, outputs) -> None:
        """The suffixes of `rows` ((cached sequence, request)) on the cached sequences `kv` (masked by
        `mask`), in batches, shortest first, generating rows last."""
        rows = sorted(rows, key=lambda r: (requests[r[1]].max_new_tokens > 0, len(suffix[r[1]])))
        for batch in self._batches(rows, suffix, requests, mask.shape[1]):
            self._suffix_batch(batch, suffix, kv, mask, requests, wanted, outputs)

    def _stem_parts(self, stems: list, cached: int) -> list[list]:
        """`stems` in parts whose stem pass attends to at most `cache_tokens` tokens (each stem holds a
        copy of its group's cached prefix, `cached` wide, for as long as its suffixes are computed)."""
        parts: list[list] = []
        for stem in stems:
            width = max(len(s) for _, s, _ in parts[-1] + [stem]) if parts else 0  # the stem pass's, padding aside
            if not parts or (len(parts[-1]) + 1) * (cached + width) > self.cache_tokens:
                parts.append([])
            parts[-1].append(stem)
        return parts

    @staticmethod
    def _stems(rows: list[tuple[int, int]], suffix: dict) -> list[tuple[int, list[int], list[int]]]:
        """The stems of a chunk: (group in the chunk, the opening tokens, the requests) for each set of
        at least two of a group's suffixes that open with the same token and share at least
        `MIN_STEM` opening tokens (each keeping at least one token of its own)."""
        by_opening: dict[tuple[int, int], list[int]] = {}
        for i, k in rows:
            by_opening.setdefault((i, suffix[k][0]), []).append(k)
        stems = []
        for (i, _), ks in by_opening.items():
            n = shared_prefix([suffix[k] for k in ks]) if len(ks) > 1 else 0
            if n >= MIN_STEM:
                stems.append((i, suffix[ks[0]][:n], ks))
        return stems

    def _prefix_pass(self, chunk: list[_Group]) -> tuple[list | None, torch.Tensor]:
        """The keys and values of the groups' prefixes, left-padded to one width P, in one pass
        (None when every prefix is empty), and their mask (G, P): `_extend_pass` on an empty cache."""
        empty = torch.zeros(len(chunk), 0, dtype=torch.long)  # (G, 0)
        if not any(g.prefix for g in chunk):
            return None, empty
        return self._extend_pass(list(range(len(chunk))), [g.prefix for g in chunk], None, empty)  # (G, H, P, D)

    def _extend(self, on: list[int], tokens: list[list[int]], kv: list | None, mask: torch.Tensor) -> tuple:
        """One forward pass of `tokens` (one list per row, left-padded to a width S), row b continuing
        cached sequence `on[b]` of `kv` (masked by `mask`, (N, P)): (the model's output, the rows'
        mask over cache and new tokens (B, P + S), their positions (B, S))."""
        from transformers import DynamicCache

        rows = torch.tensor(on)  # (B,) each row's cached sequence
        cache = DynamicCache(config=self.model.config)
        if kv is not None:  # each row gets its sequence's keys and values: (B, H, P, D)
            cache = DynamicCache(ddp_cache_data=[(k[rows], v[rows]) for k, v in kv], config=self.model.config)
        length = self._padded(max(map(len, tokens)))  # S
        ids = torch.full((len(tokens), length), self.pad_id, dtype=torch.long)  # (B, S), left-padded
        new = torch.zeros(len(tokens), length, dtype=torch.long)  # (B, S)
        for b, row in enumerate(tokens):
            if row:  # a group's prefix may be empty
                ids[b, length - len(row):] = torch.tensor(row)
                new[b, length - len(row):] = 1
        positions = mask.sum(1)[rows, None] + (new.cumsum(1) - 1).clamp(min=0)  # (B, S)
        full_mask = torch.cat([mask[rows], new], dim=1)  # (B, P + S)
        out = self._forward(ids, full_mask, positions, cache)
        self.usage.computed_tokens += int(new.sum())
        return out, full_mask, positions

    def _extend_pass(self, on: list[int], tokens: list[list[int]], kv: list | None,
                     mask: torch.Tensor) -> tuple[list, torch.Tensor]:
        """The keys and values of cached sequences `on` continued by `tokens` (as `_extend`), and
        their mask: ((B, H, P + S, D) per layer, (B, P + S))."""
        out, full_mask, _ = self._extend(on, tokens, kv, mask)
        return [(layer.keys, layer.values) for layer in getattr(out, self.cache_name).layers], full_mask

    def _suffix_batch(self, batch: list[tuple[int, int]], suffix: dict, kv: list | None, prefix_mask: torch.Tensor,
                      requests, wanted, outputs) -> None:
        """One forward pass over the suffixes of `batch` ((cached sequence, request) rows) on their
        cached prefixes: the wanted tokens' log-probabilities, and the generated text where asked."""
        out, full_mask, positions = self._extend([i for i, _ in batch], [suffix[k] for _, k in batch], kv, prefix_mask)
        logits = out.logits[:, -1].float()  # (B, V) at each row's last token
        logprobs = torch.log_softmax(logits, dim=-1)[:, wanted.to(logits.device)].cpu().numpy()  # (B, W)
        steps = max(requests[k].max_new_tokens for _, k in batch)
        texts = self._decode(logits, getattr(out, self.cache_name), full_mask, positions[:, -1], steps) if steps else None
        for b, (_, k) in enumerate(batch):
            text = None
            if requests[k].max_new_tokens:
                text = self.tokenizer.decode(texts[b][: requests[k].max_new_tokens], skip_special_tokens=True)
            outputs[k] = Output(logprobs[b], text)

    def _padded(self, width: int) -> int:
        return -(-width // self.pad_multiple) * self.pad_multiple if width else 0

    def _batches(self, rows, suffix, requests, cached: int) -> list[list[tuple[int, int]]]:
        """`rows` (sorted by suffix length) in batches of at most `batch_tokens` suffix tokens and
        `cache_tokens` tokens attended to (`cached`: the width of the cache they continue), left
        padding to the longest suffix included; generating rows in batches of their own."""
        batches, current = [], []
        for row in rows:
            generating = requests[row[1]].max_new_tokens > 0
            tokens = (len(current) + 1) * len(suffix[row[1]])
            attended = (len(current) + 1) * (cached + len(suffix[row[1]]))
            if current and (tokens > self.batch_tokens or attended > self.cache_tokens
                            or generating != (requests[current[0][1]].max_new_tokens > 0)):
                batches.append(current)
                current = []
            current.append(row)
        return batches + ([current] if current else [])

    def _decode(self, logits: torch.Tensor, cache: Any, mask: torch.Tensor, last: torch.Tensor,
                steps: int) -> list[list[int]]:
        """Greedy decoding of `steps` tokens for every row, continuing from `cache`; rows that emit
        a stop token keep stepping on padding (their later tokens are cut)."""
        tokens: list[list[int]] = [[] for _ in range(logits.shape[0])]
        done = torch.zeros(logits.shape[0], dtype=torch.bool)
        position = last.clone()
        for step in range(steps):
            nxt = logits.argmax(-1).cpu()
            for b in range(len(tokens)):
                if not done[b]:
                    if int(nxt[b]) in self.stop_ids:
                        done[b] = True
                    else:
                        tokens[b].append(int(nxt[b]))
                        self.usage.generated_tokens += 1
            if done.all() or step == steps - 1:
                break
            mask = torch.cat([mask, torch.ones(len(tokens), 1, dtype=mask.dtype)], dim=1)
            position = position + 1
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            out = self._forward(nxt[:, None], mask, position[:, None], cache)
            cache, logits = getattr(out, self.cache_name), out.logits[:, -1].float()
        return tokens
