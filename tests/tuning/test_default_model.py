"""The tuning path on the real default model (slow: skipped unless SmolLM2-135M is fetched)."""

import pytest
import torch

from recranker import assets
from recranker.tuning.config import TuningConfig
from recranker.tuning.data import Collator, encode_record
from recranker.tuning.model import load_causal_lm, prepare_model
from recranker.tuning.trainer import RankerTrainer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    if not assets.is_fetched("smollm2-135m"):
        pytest.skip("SmolLM2-135M not fetched (recranker fetch smollm2-135m)")
    return load_causal_lm("smollm2-135m")


def test_smollm2_sees_every_listwise_identifier_as_its_own_token(smollm2, records) -> None:
    tokenizer, _ = smollm2
    for record in records["listwise"]:
        example = encode_record(record, tokenizer)
        answer = record["messages"][-1]["content"].split("\n")
        assert [tokenizer.decode([example["input_ids"][s]]) for s in example["rank"]["slots"]] == answer
        assert "view" in example


def test_one_alro_step_on_smollm2_gives_finite_terms_and_gradients(smollm2, records, tmp_path) -> None:
    tokenizer, model = smollm2
    cfg = TuningConfig()
    peft_model = prepare_model(model, cfg)
    examples = [encode_record(r, tokenizer) for r in (records["listwise"][0], records["pairwise"][0])]
    batch = Collator(tokenizer.pad_token_id, ranking=True, views=True)(examples)
    from recranker.tuning.tune import training_arguments

    trainer = RankerTrainer(model=peft_model, args=training_arguments(cfg, tmp_path), alro=cfg.alro)
    loss = trainer.compute_loss(peft_model, batch)
    loss.backward()
    window = trainer.meter.window()
    assert all(torch.isfinite(torch.tensor(window[k])) for k in ("sft", "rank", "perm"))
    grads = [p.grad for n, p in peft_model.named_parameters() if "lora_B" in n]  # A's are 0 while B is 0
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    peft_model.unload()  # leave the module-scoped model as loaded
