"""Data-parallel tuning: `accelerate launch` with the shipped configs/accelerate/cpu-2-processes.yaml
(2 CPU processes over gloo, through accelerate's torchrun launcher) trains with the loss of one
process at the same global batch; only rank 0 writes the stage. (`accelerate launch --cpu
--num_processes 2` starts one process on accelerate 1.x unless given an MPI hostfile.)"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from recranker.cli.main import main

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "cpu-2-processes.yaml"
# a run of its own with 60 examples: enough that the Trainer's length grouping over one process's
# step (megabatches of 12 at 6 a step, 15 at 3) would give the two runs different steps
STEPS = ["--set", "name=tiny-dp", "--set", "sampling.instructions=20", "--set", "tuning.max_steps=4",
         "--set", "tuning.logging_steps=1"]


def losses(folder: Path) -> np.ndarray:
    return np.array([line["loss"] for line in json.loads((folder / "log.json").read_text()) if "loss" in line])


def test_two_cpu_processes_tune_like_one_at_the_same_global_batch(tiny_run) -> None:
    study = str(tiny_run.parent.parent / "study.yaml")
    assert main(["tune", "--config", study, "--set", "tuning.variant=one", "--set", "tuning.batch_size=1",
                 "--set", "tuning.grad_accum=6", *STEPS]) == 0
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG), "-m",
              "recranker.cli.main", "tune", "--config", study, "--set", "tuning.variant=two",
              "--set", "tuning.batch_size=1", "--set", "tuning.grad_accum=3", *STEPS]
    done = subprocess.run(launch, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one, two = tiny_run.parent / "tiny-dp" / "tune" / "one", tiny_run.parent / "tiny-dp" / "tune" / "two"
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4
    assert (two / "adapter" / "adapter_config.json").exists() and not (two / "checkpoints").exists()
    first, second = losses(one), losses(two)
    assert len(first) == len(second) == 4
    # 6 examples a step, the same ones in both runs (6 micro-batches of 1 in one process, 3 in each
    # of two), so equal losses up to the order of floating-point sums
    assert summary["examples"] == 60
    np.testing.assert_allclose(second, first, rtol=1e-4)
