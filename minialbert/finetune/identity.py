"""Run identity: what a fine-tuning run's numbers depend on, derived from the option fields (a field
is part of it unless its metadata marks it as unable to change the numbers: `identity: False`).
Folders and files (the model, the data, the teacher, transfer data) enter by the hash of their
content (fingerprint.path_identity; a teacher that a finetune run kept, by that run's identity:
taskdistill.teacher.teacher_identity), never by place or time, so a study resumed on another machine
reuses its finished runs and a checkpoint distilled again into the same folder is a new model;
`auto` settings enter as what they resolved to (the plan resolves them before); the code's numbers
version enters as `code_numbers` (fingerprint.CODE_NUMBERS_VERSION)."""

from __future__ import annotations

import dataclasses

from ..data.glue import GlueTask
from ..data.tasks import data_identity
from ..fingerprint import fields_identity, numbers_identity, path_identity
from ..taskdistill.options import TaskDistillationOptions
from ..taskdistill.teacher import teacher_identity
from .options import FinetuneOptions


def run_identity(opts: FinetuneOptions, model_path: str, task: GlueTask | None, teacher_path: str | None = None,
                 augment_mlm_path: str | None = None) -> dict:
    """Everything besides a RunSpec's own fields that changes a run's numbers, from the resolved
    options (`pair_encoding` and `dtype` never 'auto') and the resolved folders (finetune/plan.py)."""
    if "auto" in (opts.pair_encoding, opts.dtype):
        raise ValueError("run_identity needs the resolved pair encoding and dtype, not 'auto'")
    resolvers = {
        "model": lambda _: path_identity(model_path),
        "data_dir": lambda d: data_identity(task, d),
        "task": str.lower,
        "teacher": lambda _: teacher_identity(teacher_path),
        "augment_mlm": lambda _: path_identity(augment_mlm_path),
        "transfer_data": path_identity,
    }
    own = {f.name for f in dataclasses.fields(TaskDistillationOptions)}
    identity = fields_identity(opts, resolvers, keep=lambda f: f.name not in own and f.metadata.get("identity", True))
    if opts.distilling:  # the task-distillation fields, grouped; without a teacher none of them acts
        identity["distillation"] = fields_identity(opts, resolvers, keep=lambda f: f.name in own)
    return numbers_identity(identity)
