"""Instruction records as token ids, and batches that spend little compute on padding.

`encode_record` renders a record's chat messages with the model's chat template and tokenizes the
prompt and the answer separately (the loss is on the answer only). For a listwise record it also
finds the answer positions of the identifier tokens and the identifier token of every candidate
(for ALRO's soft lambda loss) and encodes the record's second view, the same candidates shuffled
(for the permutation-sensitive loss).

`Collator` pads on the left, so every sequence ends at the last column and all answers sit in
the last K columns: the model then computes logits for those K positions only
(`logits_to_keep=K`), not for the whole prompt. Batches of similar length come from the Trainer's
length-grouped sampler; `pad_to` and `all_logits` give the naive fixed-length padding with logits
of every position that the benchmark compares with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from recranker.errors import DataError
from recranker.prompts.templates import TASKS
from recranker.prompts.text import chat_text

IGNORE = -100


@dataclass
class Encoded:
    """One conversation as token ids: `ids[answer_start:]` is the answer (assistant turn)."""

    ids: list[int]
    answer_start: int
    slots: list[int] | None = None  # listwise: index in `ids` of the t-th answered identifier
    candidate_tokens: list[int] | None = None  # listwise: identifier token of each candidate


def identifier_tokens(tokenizer: Any, identifiers: Sequence[str]) -> list[int]:
    """The single token id of each identifier; ValueError when the tokenizer splits one."""
    out = []
    for name in identifiers:
        ids = tokenizer.encode(name, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"the tokenizer splits identifier {name!r} into {len(ids)} tokens; "
                             "the ALRO losses need one token per identifier")
        out.append(ids[0])
    return out


def encode_messages(messages: list[dict[str, str]], tokenizer: Any) -> Encoded:
    """Token ids of a conversation whose last message is the answer."""
    prompt = chat_text(messages[:-1], tokenizer, generation_prompt=True)
    full = chat_text(messages, tokenizer)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with and without the answer")
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    answer_ids = tokenizer.encode(full[len(prompt):], add_special_tokens=False)
    if not answer_ids:
        raise ValueError("empty answer")
    return Encoded(prompt_ids + answer_ids, len(prompt_ids))


def _find_slots(encoded: Encoded, tokens: list[int], top: int) -> list[int] | None:
    """Indices of the first `top` identifier tokens of the answer, or None if fewer are found."""
    wanted, slots = set(tokens), []
    for index in range(encoded.answer_start, len(encoded.ids)):
        if encoded.ids[index] in wanted:
            slots.append(index)
    return slots[:top] if len(slots) >= top else None


def encode_record(record: dict[str, Any], tokenizer: Any, *, ranking: bool = True) -> dict[str, Any]:
    """A training example: `input_ids`, `answer_start`, `task` and, for a listwise record when
    `ranking`, `rank` (answer slots, candidate tokens, grades) and `view` (the shuffled second
    view's ids, answer start, slots and candidate tokens aligned to the first view's order).
    Raises ValueError on a malformed record."""
    messages = record.get("messages")
    if not isinstance(messages, list) or len(messages) < 2 or messages[-1].get("role") != "assistant":
        raise ValueError('"messages" must end with the assistant\'s answer')
    main = encode_messages(messages, tokenizer)
    example: dict[str, Any] = {"input_ids": main.ids, "answer_start": main.answer_start,
                               "task": record.get("task", "")}
    if not ranking or record.get("task") != "listwise" or "identifiers" not in record:
        return example
    identifiers, grades = record["identifiers"], record.get("labels")
    if not isinstance(grades, list) or len(grades) != len(identifiers):
        raise ValueError('a listwise record needs one "labels" grade per identifier')
    tokens = identifier_tokens(tokenizer, identifiers)
    top = int(record.get("top", len(identifiers)))
    slots = _find_slots(main, tokens, top)
    if slots is None:
        return example  # the answer's identifiers are not separate tokens: SFT only
    example["rank"] = {"slots": slots, "tokens": tokens, "grades": [float(g) for g in grades]}
    shuffled = record.get("shuffled")
    if shuffled:
        order = shuffled["order"]
        if sorted(order) != list(range(len(identifiers))):
            raise ValueError('"shuffled.order" must be a permutation of the candidates')
        view = encode_messages(shuffled["messages"], tokenizer)
        where = {first: second for second, first in enumerate(order)}  # first-view pos -> second-view pos
        view_tokens = [tokens[where[c]] for c in range(len(identifiers))]
        view_slots = _find_slots(view, tokens, top)
        if view_slots is not None:
            example["view"] = {"input_ids": view.ids, "answer_start": view.answer_start,
                               "slots": view_slots, "tokens": view_tokens}
    return example


def encode_file(path: str | Path, tokenizer: Any, *, ranking: bool = True, limit: int | None = None,
                max_length: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """The examples of an instruction JSONL file (the first `limit` records) and how many were
    dropped for exceeding `max_length` tokens; a malformed record is a DataError naming the line."""
    from recranker.prompts.export import read_jsonl

    examples, dropped = [], 0
    for number, record in enumerate(read_jsonl(path)[:limit], start=1):
        try:
            example = encode_record(record, tokenizer, ranking=ranking)
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(path, f"record {number}: {exc}", line=number) from None
        longest = max(len(example["input_ids"]), len(example.get("view", {}).get("input_ids", [])))
        if max_length is not None and longest > max_length:
            dropped += 1
            continue
        examples.append(example)
    return examples, dropped


class Collator:
    """Pads a list of examples into one batch (left padding; see the module docstring).

    Keys: `input_ids`, `attention_mask`, `position_ids` (R, L) with R = B rows plus one per second
    view; `targets` (B, K): the answer token each kept logit must predict (IGNORE elsewhere);
    `keep` K (`all_logits`: every position); `tokens` the number of real tokens; `first` (B,) the
    kept-logit index that predicts each answer's first token (the rating, Yes/No or first
    identifier: the decision) and `task` (B,) each example's index in `TASKS` (-1: none). With `ranking`: `rank_slots` (B, T) kept-logit
    index of each answer identifier, `rank_tokens`, `rank_grades`, `rank_mask` (B, M),
    `rank_position_mask` (B, T); with `views` also `view_rows` (B,) (-1: none), `view_slots` (B, T)
    and `view_tokens` (B, M).
    """

    def __init__(self, pad_id: int, *, ranking: bool = False, views: bool = False, pad_to: int | None = None,
                 all_logits: bool = False) -> None:
        self.pad_id, self.ranking, self.views, self.pad_to = pad_id, ranking, views, pad_to
        self.all_logits = all_logits

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [(e["input_ids"], e["answer_start"]) for e in examples]
        view_rows = []
        for e in examples:
            if self.views and "view" in e:
                view_rows.append(len(rows))
                rows.append((e["view"]["input_ids"], e["view"]["answer_start"]))
            else:
                view_rows.append(-1)
        width = max(len(ids) for ids, _ in rows)
        if self.pad_to is not None:
            if width > self.pad_to:
                raise ValueError(f"an example has {width} tokens, more than pad_to={self.pad_to}")
            width = self.pad_to
        keep = width if self.all_logits else max(len(ids) - start for ids, start in rows) + 1
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (ids, _) in enumerate(rows):
            input_ids[r, width - len(ids):] = torch.tensor(ids)
            mask[r, width - len(ids):] = 1
        targets = torch.full((len(examples), keep), IGNORE, dtype=torch.long)
        for b, (ids, start) in enumerate(rows[: len(examples)]):
            for x in range(start, len(ids)):
                targets[b, keep - len(ids) + x - 1] = ids[x]
        first = torch.tensor([keep - len(ids) + start - 1 for ids, start in rows[: len(examples)]])
        task = torch.tensor([TASKS.index(e["task"]) if e.get("task") in TASKS else -1 for e in examples])
        batch = {"input_ids": input_ids, "attention_mask": mask,
                 "position_ids": (mask.cumsum(1) - 1).clamp_min(0), "targets": targets, "keep": keep,
                 "tokens": int(mask.sum()), "first": first, "task": task}
        if self.ranking:
            batch.update(self._ranking(examples, keep, view_rows))
        return batch

    def _ranking(self, examples: list[dict[str, Any]], keep: int, view_rows: list[int]) -> dict[str, torch.Tensor]:
        ranked = [e.get("rank") for e in examples]
        positions = max([len(r["slots"]) for r in ranked if r] or [1])
        candidates = max([len(r["tokens"]) for r in ranked if r] or [1])
        b = len(examples)
        out = {
            "rank_slots": torch.zeros((b, positions), dtype=torch.long),
            "rank_position_mask": torch.zeros((b, positions), dtype=torch.bool),
            "rank_tokens": torch.zeros((b, candidates), dtype=torch.long),
            "rank_grades": torch.zeros((b, candidates)),
            "rank_mask": torch.zeros((b, candidates), dtype=torch.bool),
        }
        if self.views:
            out.update(view_rows=torch.tensor(view_rows, dtype=torch.long),
                       view_slots=torch.zeros((b, positions), dtype=torch.long),
                       view_tokens=torch.zeros((b, candidates), dtype=torch.long))
        for i, (e, r) in enumerate(zip(examples, ranked)):
            if not r:
                continue
            n, t, m = len(e["input_ids"]), len(r["slots"]), len(r["tokens"])
            out["rank_slots"][i, :t] = torch.tensor([keep - n + x - 1 for x in r["slots"]])
            out["rank_position_mask"][i, :t] = True
            out["rank_tokens"][i, :m] = torch.tensor(r["tokens"])
            out["rank_grades"][i, :m] = torch.tensor(r["grades"])
            out["rank_mask"][i, :m] = True
            if self.views and view_rows[i] >= 0:
                v = e["view"]
                n2 = len(v["input_ids"])
                out["view_slots"][i, :t] = torch.tensor([keep - n2 + x - 1 for x in v["slots"]])
                out["view_tokens"][i, :m] = torch.tensor(v["tokens"])
        return out
