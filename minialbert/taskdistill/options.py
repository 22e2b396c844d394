"""The settings of task distillation, one field each (the `finetune` command takes them as flags;
task distillation is on when `teacher` is given)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import require

# Fields that change the labelled transfer set (the rows the teacher labels), besides the task data.
TRANSFER = {"transfer": True}


@dataclass(kw_only=True)
class TaskDistillationOptions:
    """task distillation (docs/method.md section 7): on when --teacher is given"""
    teacher: str | None = field(default=None, metadata={**TRANSFER, "help": (
        "task distillation: the fine-tuned teacher (a `finetune --save-models best` output folder, its saved "
        "model, or any Hugging Face sequence/token classifier with the student's vocabulary and labels); the "
        "student then learns the teacher's predictions (stage 2) after optional layer alignment (stage 1)")})
    intermediate_epochs: float = field(default=0.0, metadata={"help": (
        "stage 1 epochs: attention KL + hidden cosine to the teacher's mapped layers on the transfer set (0: "
        "stage 2 only)")})
    intermediate_lr: float = field(default=1e-4, metadata={"help": "stage 1 learning rate"})
    project_hidden: bool = field(default=False, metadata={"help": (
        "stage 1: learn a linear map when the student's width differs from the teacher's (TinyBERT style)")})
    average_heads: bool = field(default=False, metadata={"help": (
        "stage 1: compare head-averaged attention maps when the head counts differ")})
    temperature: float = field(default=1.0, metadata={"help": "stage 2 softmax temperature (loss scaled by T^2)"})
    hard_weight: float = field(default=0.0, metadata={"help": (
        "stage 2: weight of the hard-label loss on labelled rows; (1 - it) weighs the teacher's soft targets")})
    augment: int = field(default=0, metadata={**TRANSFER, "help": (
        "task distillation: N word-replacement copies of every training example, labelled by the teacher")})
    augment_probability: float = field(default=0.4, metadata={
        **TRANSFER, "help": "probability that an eligible word is replaced"})
    augment_mlm: str | None = field(default=None, metadata={**TRANSFER, "help": (
        "masked LM proposing replacements (default: --model when it has an MLM head, e.g. a distilled student)")})
    transfer_data: str | None = field(default=None, metadata={**TRANSFER, "help": (
        "task distillation: unlabelled in-domain examples labelled by the teacher: a GLUE task folder (its "
        "test.tsv), a TSV with the task's text columns, or a text file (one example per line, tab between the "
        "sentences of a pair; NER: one sentence per line)")})
    max_transfer_samples: int | None = field(default=None, metadata={
        **TRANSFER, "help": "use at most N --transfer-data examples"})

    @property
    def distilling(self) -> bool:
        return self.teacher is not None

    def validate_distillation(self) -> None:
        """Cheap checks before anything is loaded; each names its flag."""
        for flag, on in (("--augment", self.augment), ("--transfer-data", self.transfer_data),
                         ("--intermediate-epochs", self.intermediate_epochs), ("--hard-weight", self.hard_weight)):
            require(self.distilling or not on, f"{flag} is part of task distillation and needs --teacher (a "
                                               "fine-tuned teacher folder).")
        require(self.augment >= 0, f"--augment must be 0 or more (got {self.augment}).")
        require(0 < self.augment_probability <= 1, f"--augment-probability must be in (0, 1] "
                                                   f"(got {self.augment_probability}).")
        require(self.temperature > 0, f"--temperature must be positive (got {self.temperature}).")
        require(0 <= self.hard_weight <= 1, f"--hard-weight must be in [0, 1] (got {self.hard_weight}).")
        require(self.intermediate_epochs >= 0 and self.intermediate_lr > 0,
                f"--intermediate-epochs must be 0 or more and --intermediate-lr positive (got "
                f"{self.intermediate_epochs}, {self.intermediate_lr}).")

    def hyperparameters(self) -> dict:
        """What results.json records of the task distillation (empty without a teacher)."""
        if not self.distilling:
            return {}
        return {"task_distillation": {"teacher": self.teacher, "intermediate_epochs": self.intermediate_epochs,
                                      "intermediate_lr": self.intermediate_lr, "temperature": self.temperature,
                                      "hard_weight": self.hard_weight, "augment": self.augment,
                                      "augment_probability": self.augment_probability,
                                      "transfer_data": self.transfer_data}}
