import json

import pytest

from recranker.cli.main import main
from recranker.testing import synthetic_frames


@pytest.fixture()
def csv_data(tmp_path):
    log, items = synthetic_frames(n_users=40, n_items=40, per_user=16)
    log.drop(columns="line").to_csv(tmp_path / "log.csv", index=False)
    items.drop(columns="line").to_csv(tmp_path / "items.csv", index=False)
    return tmp_path


def flags(tmp_path, name="t"):
    return [
        "--format", "csv", "--path", str(tmp_path / "log.csv"), "--set", f"data.items_path={tmp_path / 'items.csv'}",
        "--runs-dir", str(tmp_path / "runs"), "--name", name,
    ]


def test_data_prints_statistics(csv_data, capsys) -> None:
    assert main(["data", *flags(csv_data)]) == 0
    out = capsys.readouterr().out
    assert "| users | items | interactions |" in out.replace("dataset | ", "")
    assert "| log | 40 | 40 | 640 |" in out
    assert (csv_data / "runs" / "t" / "split" / "_stage.json").exists()


def test_retrieve_writes_candidates_and_evaluate_reads_them(csv_data, capsys) -> None:
    assert main(["retrieve", "--model", "pop", "--candidates", "5", *flags(csv_data)]) == 0
    folder = csv_data / "runs" / "t" / "retrieval" / "pop"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"HR@10", "NDCG@10", "candidate_recall@5"}
    from recranker.types import Rankings

    candidates = Rankings.load(folder / "candidates_test.npz")
    assert candidates.depth == 5 and len(candidates) == 40
    marker_time = (folder / "_stage.json").stat().st_mtime_ns
    assert main(["retrieve", "--model", "pop", "--candidates", "5", *flags(csv_data)]) == 0
    assert (folder / "_stage.json").stat().st_mtime_ns == marker_time  # finished stage skipped
    capsys.readouterr()
    assert main(["evaluate", *flags(csv_data)]) == 0
    assert "| pop |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "log_text, message",
    [
        ("user,item,timestamp\nu1,i1,5\n", "log.csv, line 1: missing column 'rating'"),
        ("user,item,rating,timestamp\nu1,i1,5,10\nu1,i2,five,11\n", "log.csv, line 3: rating 'five' is not a number"),
        ("", "log.csv: the file is empty"),
        ("user,item,rating,timestamp\nu1,zz,5,10\n", "log.csv, line 2: item 'zz' is not in the item table"),
    ],
)
def test_bad_input_gives_one_message_and_leaves_nothing(csv_data, capsys, log_text, message) -> None:
    (csv_data / "log.csv").write_text(log_text)
    assert main(["data", *flags(csv_data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (csv_data / "runs").exists()


def test_single_interaction_user_is_left_out_with_a_warning(csv_data, caplog) -> None:
    with (csv_data / "log.csv").open("a") as fh:
        fh.write("lonely,i1,5,99\n")
    assert main(["data", *flags(csv_data)]) == 0
    assert any("'lonely' with 1 interaction" in r.getMessage() for r in caplog.records)


def test_bad_config_value_is_exit_2(csv_data, capsys) -> None:
    assert main(["data", *flags(csv_data), "--set", "retrieval.candidates=0"]) == 2
    assert "retrieval.candidates" in capsys.readouterr().err


FAST_MODELS = "retrieval.models={lightgcn: {epochs: 10, eval_every: 5}, biased_mf: {epochs: 5}}"


def prompt_flags(tmp_path, *extra, tokenizer=("--tokenizer", "none")):
    return [*flags(tmp_path), "--set", FAST_MODELS, "--set", "prompts.folds=3", "--instructions", "30",
            *tokenizer, *extra]


def test_sample_writes_users_and_is_skipped_when_done(csv_data, capsys) -> None:
    assert main(["sample", *prompt_flags(csv_data, tokenizer=())]) == 0
    assert "| adaptive | 30 |" in capsys.readouterr().out
    folder = csv_data / "runs" / "t" / "sample"
    marker = (folder / "_stage.json").stat().st_mtime_ns
    assert main(["sample", *prompt_flags(csv_data, tokenizer=())]) == 0
    assert (folder / "_stage.json").stat().st_mtime_ns == marker
    assert main(["sample", *prompt_flags(csv_data, "--strategy", "uniform", tokenizer=())]) == 0
    assert "| uniform | 30 |" in capsys.readouterr().out


def test_prompts_writes_one_jsonl_per_task_with_statistics(csv_data, capsys) -> None:
    from recranker.prompts.export import read_jsonl

    assert main(["prompts", *prompt_flags(csv_data)]) == 0
    out = capsys.readouterr().out
    folder = csv_data / "runs" / "t" / "prompts"
    for task in ("pointwise", "pairwise", "listwise"):
        records = read_jsonl(folder / f"{task}.jsonl")
        assert len(records) == 30 and all(r["hint"]["fold_model"] == r["fold"] for r in records)
        assert f"| {task} | 30 |" in out
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["exact_tokens"] is False and stats["tasks"]["listwise"]["prompt_max"] > 0
    assert "estimated" in out
    assert main(["prompts", *prompt_flags(csv_data, "--no-hints", "--tasks", "pairwise")]) == 0
    assert not (folder / "pointwise.jsonl").exists()  # the stage ran again for the new settings
    assert all(r["hint"] is None for r in read_jsonl(folder / "pairwise.jsonl"))


def test_prompts_bad_template_is_one_message_and_writes_no_prompts(csv_data, capsys) -> None:
    (csv_data / "tpl" / "movies").mkdir(parents=True)
    (csv_data / "tpl" / "movies" / "pointwise.yaml").write_text("task: pointwise\nplaceholders: [x]\n")
    args = prompt_flags(csv_data, "--tasks", "pointwise", "--set", f"prompts.templates_dir={csv_data / 'tpl'}")
    assert main(["prompts", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pointwise.yaml: missing key 'system'" in err[0], err
    assert not (csv_data / "runs" / "t" / "prompts").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tasks", "pointwise,ranking"], "prompts.tasks.1"),
        (["--set", "prompts.hints.ranking_model=nope"], "hints.ranking_model: unknown model 'nope'"),
        (["--set", "sampling.rho=0"], "sampling.rho"),
    ],
)
def test_prompts_bad_settings_are_exit_2(csv_data, capsys, extra, message) -> None:
    assert main(["prompts", *prompt_flags(csv_data, *extra)]) == 2
    assert message in capsys.readouterr().err


def test_prompts_missing_tokenizer_says_how_to_fetch_it(csv_data, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RECRANKER_HOME", str(csv_data / "empty-home"))
    assert main(["prompts", *prompt_flags(csv_data, tokenizer=())]) == 2
    assert "recranker fetch smollm2-135m" in capsys.readouterr().err


@pytest.fixture()
def tiny_model_dir(tmp_path):
    from recranker.testing import tiny_causal_lm, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tiny_causal_lm(tokenizer).save_pretrained(tmp_path / "tiny-lm")
    tokenizer.save_pretrained(tmp_path / "tiny-lm")
    return tmp_path / "tiny-lm"


def test_tune_trains_an_adapter_on_the_built_prompts_and_is_skipped_when_done(csv_data, tiny_model_dir, capsys) -> None:
    args = ["tune", *prompt_flags(csv_data), "--model", str(tiny_model_dir), "--max-steps", "3", "--batch-size", "8",
            "--tasks", "pairwise,listwise", "--limit", "12"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| listwise | 12 | 0 | 12 | 12 |" in out and "| pairwise | 12 | 0 | 0 | 0 |" in out
    assert "3 steps over 24 examples" in out
    assert main([*args, "--variant", "sft", "--no-alro"]) == 0
    assert (csv_data / "runs" / "t" / "tune" / "sft" / "adapter").exists()
    folder = csv_data / "runs" / "t" / "tune" / "main"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["tokens"] > 0 and summary["resumed"] is False
    for name in ("adapter/adapter_config.json", "log.json", "loss_curve.png", "config.yaml", "base_model.txt"):
        assert (folder / name).exists(), name
    assert "max_steps: 3" in (folder / "config.yaml").read_text()
    marker = (folder / "_stage.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (folder / "_stage.json").stat().st_mtime_ns == marker
    assert main([*args[:-2], "--limit", "8", "--no-alro"]) == 0  # other inputs: trained again
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["examples"] == 16 and summary["tasks"]["listwise"]["with_ranking_terms"] == 0

    from recranker.tuning.model import load_tuned

    tokenizer, model = load_tuned(folder)
    assert model.peft_config and tokenizer.pad_token == "<|pad|>"


def test_tune_errors_are_one_message(csv_data, capsys) -> None:
    missing = csv_data / "no-such-model"
    assert main(["tune", *prompt_flags(csv_data), "--model", str(missing)]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert main(["tune", *prompt_flags(csv_data, "--set", "prompts.tasks=[pairwise]"), "--tasks", "listwise"]) == 2
    assert "tuning.tasks: listwise not in prompts.tasks" in capsys.readouterr().err


def test_tune_with_nothing_to_train_on_is_one_message_and_writes_no_adapter(csv_data, tiny_model_dir, capsys) -> None:
    args = ["tune", *prompt_flags(csv_data), "--model", str(tiny_model_dir), "--set", "tuning.max_length=16"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no training examples" in err and "max_length=16" in err
    assert not (csv_data / "runs" / "t" / "tune").exists()


def test_a_missing_model_is_named_before_anything_else_is_needed(csv_data, capsys) -> None:
    # the default prompts tokenizer is not fetched either (empty home): the bad model is still what is named
    missing = csv_data / "no-such-model"
    assert main(["tune", *prompt_flags(csv_data, tokenizer=()), "--model", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"recranker: error: tuning.model: no model at '{missing}': no such folder or .gguf file"]
    assert main(["rank", *flags(csv_data), "--rank-model", str(missing)]) == 2
    assert f"ranking.model: no model at '{missing}'" in capsys.readouterr().err
    assert not (csv_data / "runs").exists()


@pytest.mark.parametrize("key", ["data.path", "data.items_path"])
def test_a_missing_data_file_is_one_message(csv_data, capsys, key) -> None:
    args = flags(csv_data)
    args[args.index(str(csv_data / "log.csv") if key == "data.path" else f"data.items_path={csv_data / 'items.csv'}")] = (
        str(csv_data / "nope.csv") if key == "data.path" else f"data.items_path={csv_data / 'nope.csv'}")
    assert main(["data", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"recranker: error: {csv_data / 'nope.csv'}: no such file or folder ({key})"]
    assert not (csv_data / "runs").exists()


def test_a_config_that_is_a_folder_is_one_message(csv_data, capsys) -> None:
    assert main(["data", "--config", str(csv_data)]) == 2
    assert capsys.readouterr().err.strip() == f"recranker: error: {csv_data}: is a folder, not a config file"


def test_a_second_writer_on_a_run_gets_one_message(csv_data, capsys, hold) -> None:
    proc = hold(csv_data / "runs" / "t")
    assert main(["data", *flags(csv_data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"in use by process {proc.pid}" in err[0] and "--wait" in err[0], err
    assert not (csv_data / "runs" / "t" / "split").exists()
    proc.kill()
    proc.wait()
    assert main(["data", *flags(csv_data)]) == 0  # the killed holder blocks nothing


def test_sigterm_ends_a_run_like_ctrl_c(csv_data, capsys, monkeypatch) -> None:
    import os
    import signal
    import time

    from recranker import stages

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM did not interrupt")

    def unhandled(signum, frame):  # what the test sees if main installs no handler of its own
        raise AssertionError("main left SIGTERM unhandled")

    monkeypatch.setattr(stages, "run_retrieval", terminated)
    before = signal.signal(signal.SIGTERM, unhandled)
    try:
        assert main(["retrieve", "--model", "pop", *flags(csv_data)]) == 143
        assert signal.getsignal(signal.SIGTERM) is unhandled  # restored
    finally:
        signal.signal(signal.SIGTERM, before)
    assert capsys.readouterr().err.strip() == "recranker: interrupted; finished stages are kept, run again to resume"
    assert (csv_data / "runs" / "t" / "split" / "_stage.json").exists()


def test_a_finished_backbone_prints_its_measures_in_order(csv_data, capsys) -> None:
    args = ["retrieve", "--model", "pop", *flags(csv_data), "--set", "evaluation.ks=[3,10,20]"]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert main(args) == 0  # read back from metrics.json
    again = capsys.readouterr().out.splitlines()[0]
    assert again == first
    assert first.startswith("| model | HR@3 | HR@10 | HR@20 | NDCG@3 | NDCG@10 | NDCG@20 |")


def test_set_flags_read_their_values_as_yaml_and_name_a_bad_one(capsys) -> None:
    from recranker.cli.options import set_changes
    from recranker.errors import RecrankerError

    assert set_changes(["evaluation.ks=[3, 10]", " ranking.generate =false", "name=x=y"]) == {
        "evaluation.ks": [3, 10], "ranking.generate": False, "name": "x=y"}
    with pytest.raises(RecrankerError, match="--set 'bad': expected KEY=VALUE"):
        set_changes(["bad"])
    assert main(["data", "--set", "bad"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["data.path", "data.items_path"])
def test_a_folder_where_a_file_is_read_is_one_message_naming_the_key(csv_data, capsys, key) -> None:
    args = flags(csv_data)
    where = args.index(str(csv_data / "log.csv") if key == "data.path" else f"data.items_path={csv_data / 'items.csv'}")
    args[where] = str(csv_data) if key == "data.path" else f"data.items_path={csv_data}"
    assert main(["data", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"recranker: error: {csv_data}: a folder, but {key} of the csv format is one file"]
    assert not (csv_data / "runs").exists()


def test_a_file_where_a_folder_is_read_is_one_message(csv_data, capsys) -> None:
    assert main(["data", "--format", "ml-100k", "--path", str(csv_data / "log.csv"), "--runs-dir",
                 str(csv_data / "runs")]) == 2
    assert "a file, but data.path of the ml-100k format is a folder" in capsys.readouterr().err


def test_set_of_a_backbone_the_config_does_not_list_configures_it(csv_data, capsys) -> None:
    assert main(["retrieve", "--model", "bpr", "--set", "retrieval.models.bpr.epochs=2", "--candidates", "5",
                 *flags(csv_data)]) == 0
    assert (csv_data / "runs" / "t" / "retrieval" / "bpr" / "_stage.json").is_file()
    assert not (csv_data / "runs" / "t" / "retrieval" / "lightgcn").exists()  # --model bpr: bpr alone
    assert main(["retrieve", "--set", "retrieval.models.nope.epochs=2", *flags(csv_data)]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_test_covered_flag_replaces_the_configs_test_users_and_with_test_users_is_one_error(tmp_path) -> None:
    import argparse

    from recranker.cli.options import _configured, ranking_flags

    path = tmp_path / "study.yaml"
    path.write_text("name: x\nranking: {test_users: 300}\n")
    parser = argparse.ArgumentParser()
    ranking_flags(parser)
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[])
    cfg = _configured(parser.parse_args(["--config", str(path), "--test-covered", "150"]))
    assert cfg.ranking.test_covered == 150 and cfg.ranking.test_users is None
    assert _configured(parser.parse_args(["--config", str(path)])).ranking.test_users == 300
    with pytest.raises(Exception, match="test_users and test_covered both choose the test users"):
        _configured(parser.parse_args(["--config", str(path), "--test-users", "10", "--test-covered", "5"]))
