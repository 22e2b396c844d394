"""Workarounds for the library versions we run on, in one place. Each names the version it is for,
so it can be deleted when that version is no longer supported (pyproject: transformers>=5,<6)."""

from __future__ import annotations

import dataclasses

import torch


def training_argument_names() -> set[str]:
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments)}


def length_grouping(enabled: bool) -> dict:
    """TrainingArguments for the length-grouped sampler. transformers 5 renamed `group_by_length=True`
    to `train_sampling_strategy="group_by_length"` within the 5.x series; both spellings exist."""
    if not enabled:
        return {}
    return ({"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in training_argument_names()
            else {"group_by_length": True})


def warmup_fraction(ratio: float) -> dict:
    """transformers 5 removed `warmup_ratio`; a float below 1 in `warmup_steps` is now a fraction."""
    if "warmup_ratio" in training_argument_names():
        return {"warmup_ratio": ratio}
    return {"warmup_steps": ratio if ratio < 1 else 0.999}


def tensorboard_callback(log_dir):
    """A TensorBoard callback writing into `log_dir`. transformers 5 dropped `logging_dir` from
    TrainingArguments (it reads an environment variable instead, which would leak into every later
    run of the process); the callback's public `tb_writer` argument takes a writer of our own.
    Use with `report_to="none"`."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(log_dir)))


def ordered_evaluation(trainer_cls):
    """A subclass of `trainer_cls` that reads evaluation/prediction data in dataset order.
    transformers 5 applies the training's length-grouped sampler to evaluation as well, which returns
    predictions out of order (misaligned with the labels)."""

    class OrderedEvaluation(trainer_cls):
        def _get_eval_sampler(self, eval_dataset):
            return None if eval_dataset is None else torch.utils.data.SequentialSampler(eval_dataset)

    OrderedEvaluation.__name__ = f"Ordered{trainer_cls.__name__}"
    return OrderedEvaluation


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN finds bfloat16 matrix instructions on this CPU. torch 2.x exposes this only as
    the private `torch.ops.mkldnn._is_mkldnn_bf16_supported` (no public equivalent yet)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def mask_tokens_with(collator, input_ids, special_tokens_mask, generator: torch.Generator):
    """BERT masking by a `DataCollatorForLanguageModeling` with masks drawn from `generator`.
    transformers 5 draws its masks from the collator's `generator` attribute and offers only one
    `seed` per worker process; a per-window generator (deterministic resume) has to be set there.
    Its `_generator_pid` is set too, so that the collator does not replace it by its own."""
    import os

    collator.generator, collator._generator_pid = generator, os.getpid()
    return collator.torch_mask_tokens(input_ids, special_tokens_mask)
