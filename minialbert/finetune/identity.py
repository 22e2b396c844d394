"""Run identity: what a fine-tuning run's numbers depend on, derived from the option fields (a field
is part of it unless its metadata marks it as unable to change the numbers: `identity: False`).
Folders and files (the model, the data, the teacher, transfer data) enter by path, size and
modification time of their files, so a checkpoint distilled again into the same folder is a
different model; `auto` settings enter as what they resolved to."""

from __future__ import annotations

import dataclasses

from ..checkpoints import resolve_model_name
from ..data.tasks import data_identity
from ..fingerprint import fields_identity, path_identity
from ..taskdistill.options import TaskDistillationOptions
from ..taskdistill.teacher import resolve_teacher_folder
from .options import FinetuneOptions


def run_identity(opts: FinetuneOptions, dtype: str) -> dict:
    """Everything besides a RunSpec's own fields that changes a run's numbers. `opts` must have its
    `auto` pair encoding resolved; `dtype` is the resolved precision."""
    if opts.pair_encoding == "auto":
        raise ValueError("run_identity needs the resolved pair encoding, not 'auto'")
    resolvers = {
        "model": lambda m: path_identity(resolve_model_name(m)),
        "data_dir": lambda d: data_identity(opts.task, d),
        "task": str.lower,
        "dtype": lambda _: dtype,
        "teacher": lambda t: path_identity(resolve_teacher_folder(t)),
        "augment_mlm": lambda m: path_identity(resolve_model_name(m or opts.model)) if opts.augment else None,
        "transfer_data": path_identity,
    }
    own = {f.name for f in dataclasses.fields(TaskDistillationOptions)}
    identity = fields_identity(opts, resolvers, keep=lambda f: f.name not in own and f.metadata.get("identity", True))
    if opts.distilling:  # the task-distillation fields, grouped; without a teacher none of them acts
        identity["distillation"] = fields_identity(opts, resolvers, keep=lambda f: f.name in own)
    return identity
