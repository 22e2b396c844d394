"""The one place where `minialbert finetune` resolves its inputs: the model name to its folder and
config (read once), the task to its definition and whether it is a sentence pair, `--pair-encoding
auto` and `--dtype auto` to what they mean here, the teacher and the augmenting masked LM to their
folders, the tokenizer, and the run identity. Every bad name or mismatch is refused here, before
any data is read; everything below (runner, models, task distillation) takes the plan and never
asks again."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from ..checkpoints import check_max_length, read_config, resolve_model_name
from ..data.glue import GlueTask, get_task
from ..data.tasks import DataOptions, task_name
from ..errors import MiniAlbertError, require
from ..runtime import resolve_dtype
from ..taskdistill.teacher import CheckedTeacher, check_teacher, resolve_teacher_folder
from .identity import run_identity
from .options import FinetuneOptions, auto_pair_encoding

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetunePlan:
    opts: FinetuneOptions          # validated; pair_encoding and dtype resolved (never 'auto')
    model_path: str                # the model's folder (or a hub name)
    model_config: Any              # its configuration, read once
    task: GlueTask | None          # the GLUE task; None for NER
    task_name: str                 # 'rte', 'ner:NCBI-disease': how tables and served task files name it
    pair_choice: str               # how the pair encoding was chosen (recorded in results.json)
    tokenizer: Any
    teacher_path: str | None       # task distillation: the teacher's model folder
    augment_mlm_path: str | None   # task distillation with --augment: the masked LM's folder
    identity: dict                 # what the runs' numbers depend on (finetune/identity.py)
    teacher: CheckedTeacher | None = None  # task distillation: the teacher, checked once here

    @property
    def ner(self) -> bool:
        return self.task is None

    @property
    def dtype(self) -> str:
        return self.opts.dtype

    def data_options(self) -> DataOptions:
        return self.opts.data_options()


def build_plan(opts: FinetuneOptions) -> FinetunePlan:
    """Resolve `opts` once (cheap checks first, then the model's config and tokenizer)."""
    from transformers import AutoTokenizer

    opts.validate()
    task = None if opts.task.lower() == "ner" else get_task(opts.task)
    require(opts.pair_encoding != "bi" or (task is not None and task.is_pair),
            f"--pair-encoding bi needs a sentence-pair task (mrpc, stsb, qqp, mnli, qnli, rte, wnli); {opts.task!r} "
            "is not one. Use --pair-encoding cross.")
    model_path = resolve_model_name(opts.model)
    config = read_config(opts.model, model_path)
    from ..model.families import config_position_offset

    check_max_length(opts.model, opts.max_length, config=config, position_offset=config_position_offset(config))
    if opts.pair_encoding == "auto":
        encoding, pair_choice = auto_pair_encoding(opts.task.lower(), getattr(config, "model_type", None),
                                                   task is not None and task.is_pair)
        if task is not None and task.is_pair:
            logger.info("--pair-encoding %s (%s); give --pair-encoding cross or bi to choose.", encoding, pair_choice)
    else:
        encoding, pair_choice = opts.pair_encoding, f"given: --pair-encoding {opts.pair_encoding}"
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"No tokenizer found for {opts.model!r} ({e}); a distilled student keeps its "
                              "teacher's tokenizer in OUT/final.") from None
    teacher_path = checked = None
    if opts.teacher:  # a wrong teacher fails before any data is read; the runs get what the check read
        teacher_path = resolve_teacher_folder(opts.teacher)
        checked = check_teacher(teacher_path, task is None, tokenizer, name=opts.teacher)
    mlm_path = resolve_model_name(opts.augment_mlm or opts.model) if opts.teacher and opts.augment else None
    opts = dataclasses.replace(opts, pair_encoding=encoding, dtype=resolve_dtype(opts.dtype))
    return FinetunePlan(opts, str(model_path), config, task, task_name(opts.task, opts.data_dir), pair_choice,
                        tokenizer, teacher_path, mlm_path,
                        run_identity(opts, str(model_path), task, teacher_path, mlm_path), checked)
