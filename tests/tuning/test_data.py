import json
import re

import pytest
import torch

from recranker.errors import DataError
from recranker.prompts.export import write_jsonl
from recranker.testing import tiny_causal_lm
from recranker.tuning.data import IGNORE, Collator, encode_file, encode_record


def candidates_shown(record_messages) -> dict[str, str]:
    """identifier -> title of the candidate lines ("A. Title") of a listwise prompt."""
    return dict(re.findall(r"^([A-Z])\. (.+)$", record_messages[1]["content"], flags=re.M))


def test_only_answer_tokens_are_targets_and_rows_are_left_padded(records, tokenizer) -> None:
    chosen = [records["pointwise"][0], records["pairwise"][1], records["listwise"][2]]
    examples = [encode_record(r, tokenizer, ranking=False) for r in chosen]
    batch = Collator(tokenizer.pad_token_id)(examples)
    width = batch["input_ids"].shape[1]
    assert width == max(len(e["input_ids"]) for e in examples)
    for b, (record, example) in enumerate(zip(chosen, examples)):
        n = len(example["input_ids"])
        assert batch["attention_mask"][b].tolist() == [0] * (width - n) + [1] * n
        assert batch["position_ids"][b, width - n:].tolist() == list(range(n))
        wanted = batch["targets"][b][batch["targets"][b] != IGNORE].tolist()
        assert tokenizer.decode(wanted) == record["messages"][-1]["content"] + "<|im_end|>\n"
    assert batch["tokens"] == sum(len(e["input_ids"]) for e in examples)


def test_first_points_at_each_answers_decision_token_and_task_names_its_task(records, tokenizer) -> None:
    chosen = [records["pointwise"][0], records["pairwise"][1], records["listwise"][2]]
    examples = [encode_record(r, tokenizer, ranking=False) for r in chosen]
    batch = Collator(tokenizer.pad_token_id)(examples)
    for b, record in enumerate(chosen):
        decision = tokenizer.decode([int(batch["targets"][b, batch["first"][b]])])
        assert record["messages"][-1]["content"].startswith(decision) and decision.strip()
        assert (batch["targets"][b, : batch["first"][b]] == IGNORE).all()  # nothing of the answer before it
    assert batch["task"].tolist() == [0, 1, 2]


def test_kept_logits_give_the_same_loss_as_the_full_model_on_each_unpadded_row(records, tokenizer) -> None:
    model = tiny_causal_lm(tokenizer)
    chosen = [records["pointwise"][0], records["listwise"][0]]
    examples = [encode_record(r, tokenizer, ranking=False) for r in chosen]
    batch = Collator(tokenizer.pad_token_id)(examples)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=batch["keep"]).logits
    for b, example in enumerate(examples):
        ids = torch.tensor([example["input_ids"]])
        labels = ids.clone()
        labels[0, : example["answer_start"]] = IGNORE
        reference = model(input_ids=ids, labels=labels).loss
        ours = torch.nn.functional.cross_entropy(logits[b], batch["targets"][b], ignore_index=IGNORE)
        assert ours.item() == pytest.approx(reference.item(), rel=1e-4)


def test_listwise_slots_point_at_the_answer_identifiers(records, tokenizer) -> None:
    record = records["listwise"][3]
    example = encode_record(record, tokenizer)
    rank = example["rank"]
    answer = record["messages"][-1]["content"].split("\n")
    assert [tokenizer.decode([example["input_ids"][s]]) for s in rank["slots"]] == answer
    assert [tokenizer.decode([t]) for t in rank["tokens"]] == record["identifiers"]
    assert rank["grades"] == record["labels"]
    batch = Collator(tokenizer.pad_token_id, ranking=True)([example])
    picked = batch["targets"][0, batch["rank_slots"][0]]  # the kept logit at a slot predicts that identifier
    assert [tokenizer.decode([t]) for t in picked.tolist()] == answer


def test_second_view_aligns_each_candidate_with_its_own_identifier(records, tokenizer) -> None:
    for record in records["listwise"][:6]:
        example = encode_record(record, tokenizer)
        view = example["view"]
        first, second = candidates_shown(record["messages"]), candidates_shown(record["shuffled"]["messages"])
        assert sorted(first.values()) == sorted(second.values()) and first != second
        for c, letter in enumerate(record["identifiers"]):
            assert second[tokenizer.decode([view["tokens"][c]])] == first[letter]
        answer_1 = [first[x] for x in record["messages"][-1]["content"].split("\n")]
        answer_2 = [second[x] for x in record["shuffled"]["messages"][-1]["content"].split("\n")]
        assert answer_1 == answer_2  # the same ranking, told with the second view's letters
        history = record["messages"][1]["content"].split("Rank these")[0]
        assert record["shuffled"]["messages"][1]["content"].startswith(history)


def test_views_become_extra_rows_and_fixed_padding_pads_every_batch_alike(records, tokenizer) -> None:
    examples = [encode_record(r, tokenizer) for r in (records["pointwise"][0], records["listwise"][0])]
    batch = Collator(tokenizer.pad_token_id, ranking=True, views=True, pad_to=800)(examples)
    assert batch["input_ids"].shape == (3, 800) and batch["targets"].shape[0] == 2
    assert batch["view_rows"].tolist() == [-1, 2]
    assert batch["rank_mask"][0].sum() == 0 and batch["rank_mask"][1].sum() == len(records["listwise"][0]["items"])
    with pytest.raises(ValueError, match="more than pad_to=10"):
        Collator(tokenizer.pad_token_id, pad_to=10)(examples)


def test_a_bad_record_is_one_error_naming_file_and_line(records, tokenizer, tmp_path) -> None:
    path = tmp_path / "listwise.jsonl"
    broken = dict(records["listwise"][1], labels=[1.0])
    write_jsonl(path, [records["listwise"][0], broken])
    with pytest.raises(DataError, match=r"listwise.jsonl, line 2: .*labels"):
        encode_file(path, tokenizer)
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(DataError, match="line 1: .*assistant"):
        encode_file(path, tokenizer)


def test_encode_file_limits_and_drops_overlong_conversations(records, tokenizer, tmp_path) -> None:
    path = tmp_path / "pairwise.jsonl"
    write_jsonl(path, records["pairwise"])
    examples, dropped = encode_file(path, tokenizer, limit=5)
    assert len(examples) == 5 and dropped == 0
    lengths = sorted(len(encode_record(r, tokenizer)["input_ids"]) for r in records["pairwise"])
    examples, dropped = encode_file(path, tokenizer, max_length=lengths[5])
    assert dropped == sum(n > lengths[5] for n in lengths) and len(examples) + dropped == len(lengths)


def test_fixed_padding_with_all_logits_targets_every_answer_token_in_place(records, tokenizer) -> None:
    examples = [encode_record(r, tokenizer, ranking=False) for r in (records["pointwise"][0], records["pairwise"][0])]
    ours = Collator(tokenizer.pad_token_id)(examples)
    naive = Collator(tokenizer.pad_token_id, pad_to=800, all_logits=True)(examples)
    assert naive["keep"] == 800 and naive["targets"].shape == (2, 800)
    for b in range(2):  # the same answer tokens, in the last columns of both
        assert naive["targets"][b, -ours["keep"]:].tolist() == ours["targets"][b].tolist()
        assert (naive["targets"][b, : 800 - ours["keep"]] == IGNORE).all()
