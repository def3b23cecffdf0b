"""Instruction tuning on `transformers.Trainer`: answer-only SFT plus ALRO's ranking losses.

`RankerTrainer` overrides `compute_loss` only (as TRL's trainers do), so accelerate and DeepSpeed
run it unchanged on many GPUs. The model computes logits for the last K positions of each
left-padded row only, where the answers are (`recranker.tuning.data.Collator`):

    L = L_sft + alpha * L_rank + beta * L_perm

with L_sft the mean cross-entropy of the answer tokens, and L_rank (`SoftLambdaLoss`) and L_perm
(`PermutationSensitiveLoss`) averaged over the batch's listwise examples.

L_sft averages over every answer token, and a pointwise or pairwise answer is three tokens of
which two (the end-of-turn marker and the newline after it) are learnt at once: its value near
ln(2)/3 = 0.23 is a pairwise model still guessing. So each log line also has `first_<task>`, the
mean cross-entropy of each answer's first token (the rating, the Yes/No, the first identifier) by
task: the decision the ranker reads.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from recranker.prompts.templates import TASKS
from recranker.tuning.config import AlroConfig
from recranker.tuning.data import IGNORE
from recranker.tuning.losses import PermutationSensitiveLoss, SoftLambdaLoss

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")


class Meter:
    """Running sums of the loss terms and tokens between two log lines."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start a new window."""
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.tokens = 0
        self.started = time.perf_counter()

    def add(self, name: str, value: torch.Tensor, weight: int = 1) -> None:
        """Record one batch's value of term `name` (a mean over `weight` items)."""
        self.sums[name] = self.sums.get(name, 0.0) + float(value.detach()) * weight
        self.counts[name] = self.counts.get(name, 0) + weight

    def window(self) -> dict[str, float]:
        """Mean of each term and tokens per second since the last reset."""
        seconds = max(time.perf_counter() - self.started, 1e-9)
        out = {name: self.sums[name] / self.counts[name] for name in self.sums}
        out.update(tokens=float(self.tokens), tokens_per_s=self.tokens / seconds)
        return out


class RankerTrainer(Trainer):
    """A `Trainer` whose loss is answer-only SFT plus the configured ALRO terms."""

    def __init__(self, *args: Any, alro: AlroConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alro = alro
        self.soft_lambda = SoftLambdaLoss(alro.gamma, alro.sigma) if alro.soft_lambda else None
        self.permutation = PermutationSensitiveLoss() if alro.permutation else None
        self.meter = Meter()
        self.total_tokens = 0
        self.model_accepts_loss_kwargs = False  # our loss is a mean: the Trainer scales accumulation

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """The Trainer's sampler, with length grouping over whole optimizer steps (the micro-batches
        of every process together): a data-parallel run then sees at each step the examples one
        process sees at the same global batch (the Trainer groups by one process's step only)."""
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            step = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
            sampler = LengthGroupedSampler(step, lengths=sampler.lengths, generator=sampler.generator)
        return sampler

    def compute_loss(self, model, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None):
        targets, keep = inputs["targets"], int(inputs["keep"])
        outputs = model(**{k: inputs[k] for k in MODEL_INPUTS}, logits_to_keep=keep, use_cache=False)
        logits = outputs.logits.float()  # (R, K, V)
        batch = targets.shape[0]
        sft = F.cross_entropy(logits[:batch].flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        loss = sft
        self.meter.add("sft", sft)
        self._first_token_losses(logits[:batch], targets, inputs)
        if "rank_slots" in inputs and bool(inputs["rank_mask"].any()):
            loss = loss + self._ranking_terms(logits, inputs)
        self.meter.tokens += int(inputs["tokens"])
        self.total_tokens += int(inputs["tokens"])
        return (loss, outputs) if return_outputs else loss

    def _first_token_losses(self, logits: torch.Tensor, targets: torch.Tensor, inputs: dict[str, Any]) -> None:
        """Meter each task's mean cross-entropy of the answers' first tokens (no gradient)."""
        with torch.no_grad():
            rows, first = torch.arange(len(targets)), inputs["first"]
            losses = F.cross_entropy(logits[rows, first], targets[rows, first], reduction="none")  # (B,)
            for k, task in enumerate(TASKS):
                on = inputs["task"] == k
                if bool(on.any()):
                    self.meter.add(f"first_{task}", losses[on].mean(), weight=int(on.sum()))

    def _ranking_terms(self, logits: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        ranked = inputs["rank_mask"].any(1)  # (B,) listwise examples with ranking data
        rows = ranked.nonzero().squeeze(1)
        mask, positions = inputs["rank_mask"][rows], inputs["rank_position_mask"][rows]
        at = _gather_positions(logits[rows], inputs["rank_slots"][rows])  # (b, T, V)
        extra = logits.new_zeros(())
        if self.soft_lambda is not None:
            probs = at.softmax(-1).gather(2, _per_position(inputs["rank_tokens"][rows], at))  # (b, T, M)
            rank = self.soft_lambda(probs, inputs["rank_grades"][rows], mask, positions)
            self.meter.add("rank", rank)
            extra = extra + self.alro.alpha * rank
        if self.permutation is not None and "view_rows" in inputs:
            viewed = rows[inputs["view_rows"][rows] >= 0]
            if len(viewed):
                keep = torch.isin(rows, viewed)
                first = at[keep].gather(2, _per_position(inputs["rank_tokens"][viewed], at[keep]))
                second_at = _gather_positions(logits[inputs["view_rows"][viewed]], inputs["view_slots"][viewed])
                second = second_at.gather(2, _per_position(inputs["view_tokens"][viewed], second_at))
                perm = self.permutation(first, second, inputs["rank_mask"][viewed], inputs["rank_position_mask"][viewed])
                self.meter.add("perm", perm)
                extra = extra + self.alro.beta * perm
        return extra

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the window's loss terms and tokens per second to each training log line."""
        if "loss" in logs:
            logs.update({k: round(v, 6) for k, v in self.meter.window().items()})
            self.meter.reset()
        super().log(logs, start_time)


def _gather_positions(logits: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """(b, K, V) logits, (b, T) indices -> (b, T, V)."""
    return logits.gather(1, slots[:, :, None].expand(-1, -1, logits.shape[-1]))


def _per_position(tokens: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """(b, M) token ids -> (b, T, M) index for gathering each position's candidate logits."""
    return tokens[:, None, :].expand(-1, at.shape[1], -1)


class ProgressBar(TrainerCallback):
    """One progress bar over optimizer steps with the loss, tokens/s and (tqdm's) ETA."""

    def __init__(self, trainer: RankerTrainer, enabled: bool = True) -> None:
        self.trainer, self.enabled, self.bar = trainer, enabled, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="tune", disable=not self.enabled,
                        dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", tok_s=f"{logs.get('tokens_per_s', 0):.0f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
