"""`minialbert finetune`: full fine-tuning or adapter tuning on GLUE and biomedical NER, on the
Hugging Face Trainer; single runs or the paper's grid; results as JSON; resumable grids (a finished
run with the same identity is reused, never recomputed)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import check_max_length, resolve_model_name
from ..compat import length_grouping, ordered_evaluation, tensorboard_callback, warmup_fraction
from ..data.glue import get_task, glue_metrics
from ..data.ner import ner_metrics, word_level_predictions
from ..data.tasks import TaskData, majority_baseline, prepare_data, task_collator, task_name
from ..errors import MiniAlbertError
from ..fingerprint import options_hash
from ..records import RUN_RECORD_FIELDS, read_json
from ..model.adapters import save_adapter_task
from ..runtime import resolve_dtype, training_arguments
from ..taskdistill.teacher import check_teacher
from ..taskdistill.transfer_set import build_transfer_set
from ..taskdistill.trainers import run_task_distillation
from .identity import run_identity
from .models import load_task_model
from .options import FinetuneOptions, RunSpec, auto_pair_encoding, config_key, plan_runs, plan_seeds_at_best
from .report import pipeline_name, summarise

logger = logging.getLogger(__name__)


def evaluate(trainer, data: TaskData, opts: FinetuneOptions) -> dict:
    """Dev/test metrics; `trainer` reads evaluation data in order (compat.ordered_evaluation)."""
    metrics = {}
    for name, (dataset, maps) in data.evals.items():
        logits = trainer.predict(dataset).predictions
        if data.kind == "ner":
            split = data.ner_splits[name]
            pred = word_level_predictions(maps, logits, split, data.label_names)
            metrics[name] = ner_metrics(split.tags, pred)
        else:
            task = get_task(opts.task)
            pred = logits.squeeze(-1) if task.labels is None else logits.argmax(-1)
            metrics[name] = glue_metrics(task, np.asarray(pred), np.asarray(dataset["labels"]))
    first = next(iter(metrics))
    # selection uses the first dev set (GLUE dev / MNLI matched / NER devel)
    return {"splits": metrics, "score": metrics[first]["score"]}


def run_one(opts: FinetuneOptions, spec: RunSpec, data: TaskData, tokenizer, run_dir: Path, dtype: str) -> dict:
    from transformers import Trainer

    torch.manual_seed(spec.seed)
    model = load_task_model(opts.model, data, opts.exits, opts.pair_encoding, opts.pooling)
    total = sum(p.numel() for p in model.parameters())
    if opts.adapter_tuning:
        if not hasattr(model, "prepare_adapter_tuning"):
            raise MiniAlbertError(f"--adapter-tuning needs a MiniALBERT model; {opts.model!r} is "
                                  f"{type(model).__name__}.")
        trainable = model.prepare_adapter_tuning()
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    args = training_arguments(
        run_dir / "trainer", dtype, spec.seed, per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=64, learning_rate=spec.learning_rate, weight_decay=opts.weight_decay,
        lr_scheduler_type="linear", **warmup_fraction(opts.warmup_ratio),
        num_train_epochs=spec.epochs or 1, max_steps=spec.max_steps or -1, save_strategy="no", logging_steps=50,
        disable_tqdm=False, optim="adamw_torch_fused", **length_grouping(opts.group_by_length))
    collator = task_collator(data.kind, opts.pair_encoding, tokenizer)
    start = time.time()
    if opts.teacher:
        trainer = run_task_distillation(opts, model, data, tokenizer, args, collator, run_dir, opts.pair_encoding)
    else:
        trainer = ordered_evaluation(Trainer)(model=model, args=args, train_dataset=data.train,
                                              data_collator=collator,
                                              callbacks=[tensorboard_callback(run_dir / "tensorboard")])
        trainer.train()
    seconds = time.time() - start
    result = evaluate(trainer, data, opts)
    shutil.rmtree(run_dir / "trainer", ignore_errors=True)
    if opts.save_models != "none":
        folder = run_dir / ("adapter" if opts.adapter_tuning else "model")
        if opts.adapter_tuning:
            local = Path(resolve_model_name(opts.model))
            base_pointer = str(local.resolve()) if local.exists() else opts.model  # a folder, or a hub name
            head = ("token-classification" if data.kind == "ner" else "bi-encoder" if opts.pair_encoding == "bi"
                    else "sequence-classification")
            save_adapter_task(model, run_dir / "adapter", base_pointer, head, task_name(opts.task, opts.data_dir),
                              getattr(model.config, "pooling", None))
        else:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        _model_card(folder, opts, spec, data, result)
    return {"task": opts.task, "model": opts.model, "adapter_tuning": opts.adapter_tuning,
            "hyperparameters": {"learning_rate": spec.learning_rate, "batch_size": spec.batch_size,
                                "epochs": spec.epochs, "max_steps": spec.max_steps,
                                "weight_decay": opts.weight_decay, "warmup_ratio": opts.warmup_ratio,
                                "max_length": opts.max_length, "dtype": dtype,
                                "exits": getattr(model.config, "exit_iterations", None),
                                "group_by_length": opts.group_by_length, "pair_encoding": opts.pair_encoding,
                                "pooling": opts.pooling if opts.pair_encoding == "bi" else None,
                                **opts.hyperparameters()},
            "seed": spec.seed, "metrics": result["splits"], "score": result["score"],
            "train_seconds": round(seconds, 2), "train_steps": trainer.state.global_step,
            "trainable_parameters": trainable, "total_parameters": total,
            "base_parameters": sum(p.numel() for p in model.base_model.parameters())}


def _model_card(folder: Path, opts: FinetuneOptions, spec: RunSpec, data: TaskData, result: dict) -> None:
    """README.md with the Hub's metadata: the base model's teacher, the task, the dev/test scores."""
    from ..model_card import write_model_card

    ner = data.kind == "ner"
    split = "test" if ner else next(iter(result["splits"]))
    dataset = Path(opts.data_dir).name if ner and opts.data_dir else f"glue/{opts.task.lower()}"
    scores = result["splits"][split]
    results = [{"task_type": "token-classification" if ner else "text-classification", "dataset_type": dataset,
                "dataset_name": dataset, "dataset_split": split, "metric_type": name, "metric_value": round(v, 4)}
               for name, v in scores.items() if name != "score"]
    mode = "adapter tuning" if opts.adapter_tuning else "full fine-tuning"
    length = f"{spec.max_steps} steps" if spec.max_steps else f"{spec.epochs:g} epochs"
    how = (f"Fine-tuned by `minialbert finetune` ({mode}, {opts.pair_encoding}-encoder pairs) from `{opts.model}` "
           f"on {dataset}: lr {spec.learning_rate:g}, batch {spec.batch_size}, {length}, seed {spec.seed}; "
           f"{split} scores: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in scores.items()) + ".")
    write_model_card(folder, title=f"MiniALBERT {opts.task.lower()}", base_model=opts.model, datasets=[dataset],
                     results=results, how=how, pipeline_tag="token-classification" if ner else "text-classification")


def resolve_pair_encoding(opts: FinetuneOptions, path: str) -> tuple[FinetuneOptions, str]:
    """`--pair-encoding auto` -> cross or bi for this task and model, and why (said in the log and
    recorded in results.json); an explicit choice stays."""
    if opts.pair_encoding != "auto":
        return opts, f"given: --pair-encoding {opts.pair_encoding}"
    from transformers import AutoConfig

    model_type = getattr(AutoConfig.from_pretrained(path), "model_type", None)
    encoding, reason = auto_pair_encoding(opts.task.lower(), model_type)
    if opts.task.lower() != "ner" and len(get_task(opts.task).text_columns) == 2:
        logger.info("--pair-encoding %s (%s); give --pair-encoding cross or bi to choose.", encoding, reason)
    return dataclasses.replace(opts, pair_encoding=encoding), reason


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False))  # never a bare NaN: results stay valid JSON
    os.replace(tmp, path)  # atomic: a crash never leaves half a results file


def run_finetune(opts: FinetuneOptions) -> dict:
    from transformers import AutoTokenizer

    opts.validate()
    out = Path(opts.out)
    path = resolve_model_name(opts.model)
    if opts.task.lower() != "ner":
        get_task(opts.task)  # unknown task: fail before any work
    check_max_length(opts.model, opts.max_length)
    opts, pair_choice = resolve_pair_encoding(opts, path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"No tokenizer found for {opts.model!r} ({e}); a distilled student keeps its "
                              "teacher's tokenizer in OUT/final.") from None
    if opts.teacher:  # a wrong teacher fails before any data is read
        check_teacher(opts.teacher, opts.task.lower() == "ner", tokenizer)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    data = prepare_data(opts.data_options(), tokenizer)
    dtype = resolve_dtype(opts.dtype)
    specs = plan_runs(opts, data.large)
    identity = run_identity(opts, dtype)
    transfer = None
    if opts.teacher:  # task distillation: train on the teacher-labelled transfer set
        data.train, transfer = build_transfer_set(opts, opts.data_options(), opts.model, data, tokenizer, out)
    run = dict(data=data, tokenizer=tokenizer, out=out, dtype=dtype, identity=identity)
    results = [_run_or_reuse(opts, spec, **run, label=f"{i}/{len(specs)}") for i, spec in enumerate(specs, 1)]
    chosen = None
    if opts.seeds_at_best and opts.seeds_at_best > 1:
        # Pick the configuration on dev with one seed per configuration, then repeat only it; the
        # reported score is its mean over seeds (a lucky single-seed configuration cannot take over).
        best = summarise(opts, results)["best"]
        chosen = config_key(best)
        results += [_run_or_reuse(opts, spec, **run, label=f"seed {spec.seed}")
                    for spec in plan_seeds_at_best(opts, best, results)]
    summary = summarise(opts, results, chosen)
    summary["pair_encoding_choice"] = pair_choice
    summary["majority_baseline"] = majority_baseline(data, opts.task.lower())
    if transfer:
        summary["transfer_set"] = {k: v for k, v in transfer.items() if k != "examples"}
    if opts.save_models == "best":
        for r in results:
            if r["run_id"] != summary["best"]["best_run"]:
                for sub in ("model", "adapter"):
                    shutil.rmtree(out / "runs" / r["run_id"] / sub, ignore_errors=True)
    _write_json(out / "results.json", summary)
    return summary


def _run_or_reuse(opts: FinetuneOptions, spec: RunSpec, *, data: TaskData, tokenizer, out: Path, dtype: str,
                  identity: dict, label: str) -> dict:
    run_id = spec.run_id(opts.task.lower(), opts.adapter_tuning, options_hash(identity))
    record = out / "runs" / f"{run_id}.json"
    if record.exists():  # interrupted grids resume without redoing finished runs
        done = read_json(record, RUN_RECORD_FIELDS, f"Delete {record} to run it again.")
        if done.get("identity") != identity:  # only a hash collision or a hand-edited file gets here
            raise MiniAlbertError(f"{record} was computed with other options than this run's; move it away or "
                                  "choose another --out.")
        logger.info("[%s] %s: already done with identical options, reusing it", label, run_id)
        return done
    logger.info("[%s] %s", label, run_id)
    result = run_one(opts, spec, data, tokenizer, out / "runs" / run_id, dtype)
    result["run_id"], result["identity"] = run_id, identity
    _write_json(record, result)
    return result


