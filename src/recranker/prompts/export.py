"""Instruction files: JSONL in the chat-messages format, and their token-length statistics."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from recranker.artifacts import atomic_write
from recranker.errors import DataError
from recranker.prompts.text import TokenCounter, chat_text


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line, atomically; returns the number written."""
    n = 0
    with atomic_write(path) as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False))
            fh.write("\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of an instruction file; a line that is not a JSON object with `messages` is a
    `DataError` naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    records = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"not JSON ({exc.msg})", line=number) from None
            if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
                raise DataError(path, 'expected an object with a "messages" list', line=number)
            records.append(record)
    return records


def token_lengths(records: list[dict[str, Any]], tokenizer: Any | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(prompt tokens, answer tokens) of each record rendered with the chat template: the prompt is
    every message but the last plus the generation prompt; the answer is the rest of the
    conversation (the assistant's text and its end-of-turn tokens). Estimated without a tokenizer."""
    counter = TokenCounter(tokenizer)
    prompts = [chat_text(r["messages"][:-1], tokenizer, generation_prompt=True) for r in records]
    full = [chat_text(r["messages"], tokenizer) for r in records]
    prompt_tokens = counter.count(prompts)
    return prompt_tokens, counter.count(full) - prompt_tokens


def length_summary(prompt_tokens: np.ndarray, answer_tokens: np.ndarray) -> dict[str, float]:
    """Count, mean, min, median, p90, p99 and max of prompt tokens, and mean / max answer tokens."""
    if not len(prompt_tokens):
        return {"instructions": 0}
    q = np.percentile(prompt_tokens, [50, 90, 99])
    return {
        "instructions": int(len(prompt_tokens)),
        "prompt_mean": float(prompt_tokens.mean()),
        "prompt_min": int(prompt_tokens.min()),
        "prompt_p50": float(q[0]),
        "prompt_p90": float(q[1]),
        "prompt_p99": float(q[2]),
        "prompt_max": int(prompt_tokens.max()),
        "answer_mean": float(answer_tokens.mean()),
        "answer_max": int(answer_tokens.max()),
        "total_tokens": int(prompt_tokens.sum() + answer_tokens.sum()),
    }
