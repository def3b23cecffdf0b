"""Reference: RecBole 1.2.1's LightGCN, SGL, SASRec and BERT4Rec on exactly our split, beside our backbones.

Runs in a virtualenv of its own (no CUDA torch; pandas < 3, which RecBole 1.2.1 predates):

    python3.11 -m venv /work/recbole-env && E=/work/recbole-env/bin
    $E/pip install torch==2.13.0 && $E/pip install --no-deps recbole==1.2.1 && $E/pip install --no-deps -e .
    $E/pip install numpy scipy "pandas<3" tqdm colorlog colorama pyyaml scikit-learn tabulate texttable psutil pydantic
    python bench/backbones.py --models lightgcn sgl      # ours, in the project's venv: runs/bench-backbones
    $E/python bench/recbole_reference.py --run runs/bench-backbones [--models LightGCN SGL] [--epochs 400] [--write]

On ML-1M: `python bench/backbones.py --data ml-1m` first (runs/bench-backbones-ml-1m), then
`--run runs/bench-backbones-ml-1m --section backbones-recbole-ml-1m`; RecBole's epochs are long on
2 cores, so `--max-minutes` stops a model at the end of the epoch that passes the budget (its best
validation checkpoint is then tested, and the row says so). The learning rate, most epochs,
evaluation interval, patience and (graph models) batch size follow our model's config saved in
the run (`matched_settings`), so RecBole gets the ML-1M settings of bench/backbones.py SETTINGS
too, and the section lists what each RecBole model was given.

Sequential models (SASRec, BERT4Rec): RecBole's benchmark files would need its item-list columns
prebuilt, so they read one `.inter` file instead: each split user's liked training items in our
order, then the validation target, then the test target, the timestamp being the position in that
order, split by RecBole's own leave-one-out by time ({"LS": "valid_and_test"}, order "TO"): the same
targets and the same training sequences. RecBole trains them on every prefix of each sequence
(its data augmentation; ours on windows of 50 with a target at every position: the same targets),
with its default 2,048 prefixes per batch. RecBole's full ranking for sequential models excludes
nothing, so the `ours` columns of those rows rank with nothing excluded too (`exclude="none"`).
Settings as ours: hidden 64, 2 blocks, 2 heads, MLP 256, GELU, dropout 0.2, 50 positions, full
softmax (CE), Adam(W) lr 1e-3 (BERT4Rec 2e-3, mask ratio 0.4), validation every epoch, stop after 10
evaluations without improvement (RecBole's stopping_step 9). Not settable, so different: RecBole's
blocks are post-norm with LayerNorm eps 1e-12 (ours pre-norm, 1e-5), its BERT4Rec adds a trailing
[MASK] to the training prefixes.

Each model runs in a process of its own (its own peak RSS, as in bench/backbones.py). The run's
split becomes RecBole "benchmark" atomic files: train = our liked training interactions (what our
LightGCN/SGL train on), valid = each split user's validation target, test = their test target,
and a `.item` file of every item of the dataset, so both rank the same catalogue.

Excluded when ranking for the test target: RecBole (FullSortEvalDataLoader, the Sampler's used_ids
of phase "test") drops each user's items of the train and valid files: the liked training items
and the validation target. Our column "NDCG@10 (RecBole excl.)" (`top_m(..., exclude="liked")`,
stage "test") drops `split.seen("test", liked_only=True)`, every liked interaction strictly before
the test target's time: the same, plus the liked items rated at the very time of the validation
target (neither training nor target; 699 items of 326 users on the default ML-100K split; the
script reports the count). `--exclude-tied` adds those to the valid file, so RecBole excludes
them too (those users then have several validation positives). At validation (early stopping)
RecBole drops the liked training items, ours every item rated before the validation target.

Settings: ours where RecBole exposes them: embedding 64, 3 layers, Adam lr 1e-2, batch 4096, one
uniform negative (not a liked training item), L2 1e-4 on the batch's ego embeddings, SGL-ED with
drop ratio 0.1, ssl weight 0.02, tau 0.2 and L2 1e-3 (SGLConfig's defaults), validation NDCG@10 every 5 epochs, at most 400 epochs,
stop after 5 evaluations without improvement (RecBole stops when its count exceeds stopping_step,
so 4), seed 0, CPU. Not settable, so different: RecBole's embeddings start Xavier-uniform (ours
normal, std 0.1); its early stopping takes a tie as an improvement; its SGL sums BPR and InfoNCE
over the batch rows (ours: means, InfoNCE over the batch's distinct users/items; both use the
second view's embeddings of *all* users/items as InfoNCE negatives), keeps exactly
(1 - drop ratio) of the edges per view (ours: each edge independently) and ignores require_pow
(L2 on unsquared norms), so its L2 weight means something else. Its LightGCN's L2 equals ours
(require_pow: half the squared norms over the batch size); its graph, D^-1/2 A D^-1/2, too.

Shims for RecBole 1.2.1 on new packages, set at run time (its files are untouched): numpy 2's
removed `np.float_`, `np.complex_`, `np.unicode_` (its Config aliases np.float etc. to them; its
NDCG uses np.float); scipy's removed `dok_matrix._update` (its LightGCN builds the graph with it);
`torch.load(..., weights_only=False)` to reload its own best checkpoint (torch >= 2.6 defaults to
True); a no-op `torch.utils.tensorboard` (logging only). `recbole.quick_start` imports ray, so the
lower-level API is used.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {"LightGCN": "lightgcn", "SGL": "sgl", "SASRec": "sasrec", "BERT4Rec": "bert4rec"}  # RecBole name -> ours
SEQUENTIAL = {  # ours: SequenceConfig's, SASRecConfig's and BERT4RecConfig's defaults
    "SASRec": dict(n_layers=2, n_heads=2, hidden_size=64, inner_size=256, hidden_dropout_prob=0.2,
                   attn_dropout_prob=0.2, hidden_act="gelu", loss_type="CE", learning_rate=1e-3,
                   MAX_ITEM_LIST_LENGTH=50, train_batch_size=2048, train_neg_sample_args=None),
}
SEQUENTIAL["BERT4Rec"] = {**SEQUENTIAL["SASRec"], "learning_rate": 2e-3, "mask_ratio": 0.4}
SEQ_PATIENCE = 10  # ours: SASRecConfig.patience, BERT4RecConfig.patience (validation every epoch)
OURS = dict(embedding_size=64, n_layers=3, learning_rate=1e-2, reg_weight=1e-4, require_pow=True, train_batch_size=4096)
SGL = dict(type="ED", drop_ratio=0.1, ssl_weight=0.02, ssl_tau=0.2, reg_weight=1e-3)  # ours: SGLConfig's defaults
EVAL_EVERY, PATIENCE = 5, 5  # ours: LightGCNConfig.eval_every, RetrieverConfig.patience


def patch_for_new_numpy_and_torch() -> None:
    """Shims for RecBole 1.2.1 on numpy 2 / torch 2.13; call before importing recbole."""
    import types
    import warnings

    import numpy as np
    import scipy.sparse as sp
    import torch

    # aliases removed in numpy 2.0 that RecBole's Config.compatibility_settings reads to define
    # np.float, np.long, ... (np.float is then used by its NDCG)
    for alias, kind in {"float_": np.float64, "complex_": np.complex128, "unicode_": np.str_}.items():
        if alias not in np.__dict__:
            setattr(np, alias, kind)
    if not hasattr(sp.dok_matrix, "_update"):  # removed in scipy 1.13; LightGCN fills its graph with it
        sp.dok_matrix._update = lambda self, data: self._dict.update(data)
    load = torch.load
    torch.load = lambda *a, **k: load(*a, **{"weights_only": False, **k})  # its own checkpoint
    stub = types.ModuleType("torch.utils.tensorboard")  # logging only: a writer that writes nothing
    stub.SummaryWriter = type("SummaryWriter", (), {"__init__": lambda s, *a, **k: None,
                                                    "__getattr__": lambda s, n: lambda *a, **k: None})
    sys.modules["torch.utils.tensorboard"] = stub
    # deprecation noise raised from RecBole's own code (pandas inplace fillna, torch.sparse.FloatTensor,
    # torch.cuda.amp.GradScaler): harmless here, hidden
    warnings.filterwarnings("ignore", module=r"recbole\.")


def write_atomic_files(run: Path, folder: Path, name: str, exclude_tied: bool) -> tuple[int, int]:
    """Write <name>.{train,valid,test}.inter and <name>.item from the run's split; return the
    numbers of liked items tied with a validation target (excluded by ours at test, see above)
    and of items."""
    from recranker.split import Split

    split = Split.load(str(run / "split"))
    users = split.users
    train = split.liked_train()[["user", "item"]]
    valid_at = split.seen("valid", liked_only=True)  # liked training items
    test_at = split.seen("test", liked_only=True)  # what our "RecBole excl." column excludes
    valid_item = dict(zip(users.tolist(), split.target_items("valid").tolist()))
    tied = (test_at - valid_at).tocoo()  # validation targets and the liked items tied with them
    tied = [(u, i) for u, i in zip(tied.row.tolist(), tied.col.tolist()) if i != valid_item[u]]
    valid = [(u, i) for u, i in zip(users, split.target_items("valid"))] + (tied if exclude_tied else [])
    frames = {"train": list(train.itertuples(index=False, name=None)), "valid": valid,
              "test": list(zip(users, split.target_items("test")))}
    folder.mkdir(parents=True)
    for part, rows in frames.items():
        lines = ["user_id:token\titem_id:token"] + [f"{u}\t{i}" for u, i in rows]
        (folder / f"{name}.{part}.inter").write_text("\n".join(lines) + "\n")
    (folder / f"{name}.item").write_text("item_id:token\n" + "".join(f"{i}\n" for i in range(split.n_items)))
    return len(tied), split.n_items


def write_sequence_file(run: Path, folder: Path, name: str) -> tuple[int, int]:
    """Write <name>.inter for RecBole's sequential models: per split user, the liked training items
    in our order, then the validation and the test target, timestamped by position; return the
    numbers of interactions and of items."""
    from recranker.split import Split

    split = Split.load(str(run / "split"))
    train = split.liked_train()  # ordered by user, time, tie key (the split's order)
    rows = {int(u): [] for u in split.users}
    for u, i in zip(train["user"].tolist(), train["item"].tolist()):
        rows[u].append(i)
    for u, v, t in zip(split.users.tolist(), split.target_items("valid").tolist(), split.target_items("test").tolist()):
        rows[u] += [v, t]
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{pos}" for u, items in rows.items() for pos, i in enumerate(items)]
    folder.mkdir(parents=True)
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    (folder / f"{name}.item").write_text("item_id:token\n" + "".join(f"{i}\n" for i in range(split.n_items)))
    return len(lines) - 1, split.n_items


def matched_settings(run: Path, model: str) -> dict:
    """RecBole settings that follow our backbone's own config in the run (its model.pt), so a run
    with non-default settings (ML-1M: bench/backbones.py SETTINGS) is met with the same ones: the
    learning rate, the evaluation interval and patience, the most epochs, and for the graph models
    the batch size. The sequential models keep RecBole's 2,048 prefixes a batch (one target each;
    ours are windows of 50 positions with a target at each, so batch sizes do not correspond).
    Without our model in the run: our defaults (the constants above)."""
    path = run / "retrieval" / MODELS[model] / "model.pt"
    if model in SEQUENTIAL:
        base = {"learning_rate": SEQUENTIAL[model]["learning_rate"], "eval_step": 1, "stopping_step": SEQ_PATIENCE - 1}
    else:
        base = {"learning_rate": OURS["learning_rate"], "train_batch_size": OURS["train_batch_size"],
                "eval_step": EVAL_EVERY, "stopping_step": PATIENCE - 1}
    if not path.exists():
        return base
    import torch

    cfg = torch.load(path, map_location="cpu", weights_only=False)["config"]
    base.update(learning_rate=cfg["lr"], eval_step=cfg["eval_every"], stopping_step=cfg["patience"] - 1, epochs=cfg["epochs"])
    if model not in SEQUENTIAL:
        base["train_batch_size"] = cfg["batch_size"]
    return base


def describe(settings: dict) -> str:
    """One line of the settings `matched_settings` chose."""
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in settings.items())


class OverBudget(Exception):
    """Raised at the start of an epoch once the training budget is spent."""


def run_one(model: str, args: argparse.Namespace) -> dict:
    """Train and test one RecBole model on the run's split; a dict of results."""
    patch_for_new_numpy_and_torch()
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    with tempfile.TemporaryDirectory(prefix="recbole-ref-") as tmp:
        name = "recranker"  # not "ml-100k": RecBole would load its own settings for that name
        common = {"data_path": tmp, "checkpoint_dir": str(Path(tmp) / "saved"),
                  "metrics": ["NDCG", "Hit"], "topk": [10], "valid_metric": "NDCG@10", "epochs": args.epochs,
                  "seed": 0, "reproducibility": True, "use_gpu": False, "gpu_id": "",
                  "show_progress": False, "state": "WARNING"}
        if model in SEQUENTIAL:
            n_tied = 0
            _, n_items = write_sequence_file(Path(args.run), Path(tmp) / name, name)
            settings = {
                **common, **SEQUENTIAL[model],
                "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]},
                "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
                "eval_batch_size": 1024, **matched_settings(Path(args.run), model),
            }
        else:
            n_tied, n_items = write_atomic_files(Path(args.run), Path(tmp) / name, name, args.exclude_tied)
            settings = {
                **common, **OURS, **(SGL if model == "SGL" else {}),
                "benchmark_filename": ["train", "valid", "test"],
                "load_col": {"inter": ["user_id", "item_id"], "item": ["item_id"]},
                "eval_args": {"mode": "full", "order": "RO", "group_by": "user"},
                "eval_batch_size": 1024 * (n_items + 1),  # scores per batch: 1024 users, as our top_m
                "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
                **matched_settings(Path(args.run), model),
            }
        settings["epochs"] = min(settings["epochs"], args.epochs)
        settings["eval_step"] = min(settings["eval_step"], settings["epochs"])
        argv, sys.argv = sys.argv, sys.argv[:1]  # RecBole's Config would also parse our command line
        config = Config(model=model, dataset=name, config_dict=settings)
        sys.argv = argv
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])  # as run_recbole does
        net = get_model(model)(config, train_data.dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], model)(config, net)
        started, over = time.perf_counter(), False
        if args.max_minutes:  # stop at the start of the first epoch after the budget
            train_epoch = trainer._train_epoch

            def budgeted(*a, **k):
                if time.perf_counter() - started >= 60 * args.max_minutes:
                    raise OverBudget
                return train_epoch(*a, **k)

            trainer._train_epoch = budgeted
        try:
            trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        except OverBudget:
            over = True
        best_valid = trainer.best_valid_score
        seconds = time.perf_counter() - started
        test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    return {"model": model, "NDCG@10": float(test["ndcg@10"]), "HR@10": float(test["hit@10"]),
            "valid NDCG@10": float(best_valid), "epochs": len(trainer.train_loss_dict), "budget": over, "train s": seconds,
            "peak RSS MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "users": int(dataset.user_num - 1), "items": int(dataset.item_num - 1), "tied": n_tied,
            "settings": describe({k: settings[k] for k in ("learning_rate", "train_batch_size", "epochs",
                                                            "eval_step", "stopping_step")})}


def ours(run: Path, model: str) -> dict:
    """Our backbone's figures from the run, when it has them (bench/backbones.py's run): under
    RecBole's exclusion, which for its sequential models is none (then our saved model is ranked
    again with nothing excluded)."""
    folder = run / "retrieval" / MODELS[model]
    if not (folder / "metrics.json").exists():
        return {}
    summary = json.loads((folder / "metrics.json").read_text())
    log = json.loads((folder / "log.json").read_text())
    if model in SEQUENTIAL:
        from recranker.retrieval import load_retriever
        from recranker.split import Split

        split = Split.load(str(run / "split"))
        scores = load_retriever(folder / "model.pt", split).evaluate(split, "test", ["NDCG@10", "HR@10"], exclude="none")
        test = {k: float(scores[k].mean()) for k in ("NDCG@10", "HR@10")}
    else:
        test = summary["test_exclude_liked_only"]
    return {"NDCG@10": test["NDCG@10"], "HR@10": test["HR@10"], "epochs": len(log),
            "budget": bool(summary.get("stopped_by_budget")), "train s": summary["train_seconds"],
            "peak RSS MiB": summary["peak_rss_mib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished run folder with split/ (e.g. runs/bench-backbones)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=400, help="a cap on epochs: RecBole gets the smaller "
                        "of this and our model's `epochs` in the run")
    parser.add_argument("--exclude-tied", action="store_true", help="put the liked items tied with the "
                        "validation target into the valid file, so the test exclusion is exactly ours")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop a model at the start of the "
                        "first epoch after this many minutes of training (its best checkpoint is tested)")
    parser.add_argument("--section", default="backbones-recbole", help="BENCHMARKS.md section")
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one model, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return
    rows = []
    for model in args.models:  # each in a fresh process, so its peak RSS is its own
        child = [sys.executable, __file__, "--one", model, "--run", args.run, "--epochs", str(args.epochs)]
        child += ["--max-minutes", str(args.max_minutes)] if args.max_minutes else []
        out = subprocess.run(child + ["--exclude-tied"] * args.exclude_tied, check=True, stdout=subprocess.PIPE, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    header = ["model", "NDCG@10", "HR@10", "epochs", "train s", "peak RSS MiB",
              "ours NDCG@10 (RecBole excl.)", "ours HR@10", "ours epochs", "ours train s", "ours peak RSS MiB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        o = ours(Path(args.run), r["model"])
        cells = [f"RecBole {r['model']}", f"{r['NDCG@10']:.4f}", f"{r['HR@10']:.4f}",
                 str(r["epochs"]) + (" (budget)" if r.get("budget") else ""), f"{r['train s']:.1f}", f"{r['peak RSS MiB']:.0f}"]
        cells += [f"{o['NDCG@10']:.4f}", f"{o['HR@10']:.4f}", str(o["epochs"]) + (" (budget)" if o["budget"] else ""),
                  f"{o['train s']:.1f}", f"{o['peak RSS MiB']:.0f}"] if o else ["-"] * 5
        lines.append("| " + " | ".join(cells) + " |")
    r = rows[0]
    body = (
        f"RecBole 1.2.1 on the split of `{args.run}` ({r['users']} users, {r['items']} items): trained on "
        "our liked training interactions, early-stopped on validation NDCG@10 (the learning rate, most epochs, "
        "evaluation interval and patience of our model in the run, and for the graph models its batch size; "
        "RecBole stops once `stopping_step` evaluations pass without improvement, so it is our patience - 1), "
        "full ranking of the test target with the user's train and "
        "validation items excluded; `ours` = the same run's backbone under our \"NDCG@10 (RecBole excl.)\" "
        f"protocol, which also excludes {max(x['tied'] for x in rows)} liked items tied in time with a validation target"
        + (" (put into RecBole's valid file here, so the exclusions are equal)" if args.exclude_tied else "")
        + ". Sequential models (SASRec, BERT4Rec): one time-ordered file split by RecBole's leave-one-out "
        "(the same targets), RecBole's 2,048 prefixes a batch, and nothing excluded when ranking, for RecBole "
        "and for `ours` alike. "
        + (f"`(budget)`: stopped by the {args.max_minutes:g}-minute budget at the start of an epoch, best "
           "validation checkpoint tested. " if args.max_minutes else "")
        + "Settings as ours where RecBole has them; see the docstring of bench/recbole_reference.py "
        "for what differs. `train s` includes the validation passes. RecBole's settings: "
        + "; ".join(f"{r['model']}: {r['settings']}" for r in rows) + ".\n\n" + "\n".join(lines)
    )
    print(body)
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _common import write_section

        flags = f" --models {' '.join(args.models)} --epochs {args.epochs}" + " --exclude-tied" * args.exclude_tied
        flags += f" --max-minutes {args.max_minutes:g}" * bool(args.max_minutes)
        flags += f" --section {args.section}" * (args.section != "backbones-recbole")
        write_section(args.section, body, f"python bench/recbole_reference.py --run {args.run}{flags}")


if __name__ == "__main__":
    main()
