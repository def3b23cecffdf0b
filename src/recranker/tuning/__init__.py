"""Instruction tuning (DESIGN section 6): LoRA or full fine-tuning of a causal LM on the
instruction data, with answer-only SFT and ALRO's soft lambda and permutation-sensitive losses.

    config.py   TuningConfig (LoRA, ALRO, batching, schedule), the `tuning` section of a study
    data.py     records -> token ids (answer positions, identifier slots, second view); Collator
    losses.py   SoftLambdaLoss, PermutationSensitiveLoss
    trainer.py  RankerTrainer (a transformers.Trainer subclass), progress bar
    model.py    load_causal_lm (default / folder / GGUF / Hugging Face id), LoRA wrapping, load_tuned
    tune.py     one run from examples to saved adapter, log and loss curve (resumable)
"""

from recranker.tuning.config import AlroConfig, LoraConfig, TuningConfig
from recranker.tuning.losses import PermutationSensitiveLoss, SoftLambdaLoss

__all__ = ["AlroConfig", "LoraConfig", "PermutationSensitiveLoss", "SoftLambdaLoss", "TuningConfig"]
