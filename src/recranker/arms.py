"""The LLM arms of a study: which LLM ranks, and whether its prompts show hints. ONE table.

A study ranks each backbone's candidates with the tuned LLM and, as baselines, with other arms.
Every other module asks this table what an arm means (`ARMS[arm].hints`, `.tuned_model`...)
instead of comparing arm names.

| arm         | LLM                     | hints shown | validation pass | bootstrap passes | report label        |
|-------------|-------------------------|-------------|-----------------|------------------|---------------------|
| `tuned`     | the run's tuned model   | yes         | yes (fusions)   | yes (test)       | tuned LLM           |
| `zero_shot` | the base model, untuned | yes         | no              | no               | untuned LLM         |
| `no_hints`  | the run's tuned model   | no          | no              | no               | tuned LLM, no hints |

("hints shown" when `prompts.hints.enabled`; the validation pass runs when `ranking.tune_weights`;
the bootstrap passes when `ranking.bootstrap` > 1.) `ARMS` lists them in the report's order.
An arm's passes live in rank/<backbone>/<arm>/<target>/ (`target`: "valid" or "test").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Arm(str, Enum):
    """An LLM arm of a study (see the module's table); its value is its folder name."""

    TUNED = "tuned"
    NO_HINTS = "no_hints"
    ZERO_SHOT = "zero_shot"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ArmSpec:
    """What an arm means: `tuned_model` (the run's tuned model, else the base model untuned),
    `hints` (its prompts show hints when the config enables them), `validated` (it has a validation
    pass, where the hybrid's weights, the position prior and the fusions are fitted),
    `bootstrapped` (its test pass makes `ranking.bootstrap` listwise passes), `label` (its
    name in the report's tables), `hybrid_row` and `tuned_hybrid_row` (its report rows; None: no
    such row)."""

    tuned_model: bool
    hints: bool
    validated: bool
    bootstrapped: bool
    label: str
    hybrid_row: str
    tuned_hybrid_row: str | None


#: the one table of what each arm means
ARMS: dict[Arm, ArmSpec] = {
    Arm.TUNED: ArmSpec(tuned_model=True, hints=True, validated=True, bootstrapped=True, label="tuned LLM",
                       hybrid_row="hybrid", tuned_hybrid_row="tuned hybrid"),
    Arm.ZERO_SHOT: ArmSpec(tuned_model=False, hints=True, validated=False, bootstrapped=False, label="untuned LLM",
                           hybrid_row="zero-shot hybrid", tuned_hybrid_row=None),
    Arm.NO_HINTS: ArmSpec(tuned_model=True, hints=False, validated=False, bootstrapped=False,
                          label="tuned LLM, no hints", hybrid_row="hybrid w/o hints",
                          tuned_hybrid_row="tuned hybrid w/o hints"),
}

#: the arm whose validation pass fits the fusions and whose lists are the study's main rows
MAIN_ARM = Arm.TUNED

#: the arms a config may run beside the tuned one (`ranking.arms`), in the order they run
BASELINE_ARMS: tuple[Arm, ...] = (Arm.NO_HINTS, Arm.ZERO_SHOT)

#: the held-out interaction a user is evaluated on: the validation target, or the test target
TARGETS = ("valid", "test")
