"""`minialbert finetune`: full fine-tuning or adapter tuning on GLUE and biomedical NER, on the
Hugging Face Trainer; single runs or the paper's grid; results as JSON; resumable grids (a finished
run with the same identity is reused, never recomputed)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from ..compat import length_grouping, ordered_evaluation, tensorboard_callback, warmup_fraction
from ..data.glue import GlueTask, glue_metrics
from ..data.ner import ner_metrics, word_level_predictions
from ..data.tasks import TaskData, majority_baseline, prepare_data, task_collator
from ..errors import MiniAlbertError
from ..fingerprint import library_versions, options_hash
from ..model.adapters import save_adapter_task
from ..records import RUN_RECORD_FIELDS, read_json, write_json
from ..resumable import resumable_callbacks, resume_point, training_seconds
from ..runtime import training_arguments
from ..taskdistill.trainers import run_task_distillation
from ..taskdistill.transfer_set import TransferSources, build_transfer_set
from .models import load_task_model
from .options import FinetuneOptions, RunSpec, config_key, plan_runs, plan_seeds_at_best
from .plan import FinetunePlan, build_plan
from .report import summarise

logger = logging.getLogger(__name__)


def evaluate(trainer, data: TaskData, task: GlueTask | None) -> dict:
    """Dev/test metrics; `trainer` reads evaluation data in order (compat.ordered_evaluation)."""
    metrics = {}
    for name, (dataset, maps) in data.evals.items():
        logits = trainer.predict(dataset).predictions
        if task is None:  # NER
            split = data.ner_splits[name]
            pred = word_level_predictions(maps, logits, split, data.label_names)
            metrics[name] = ner_metrics(split.tags, pred)
        else:
            pred = logits.squeeze(-1) if task.labels is None else logits.argmax(-1)
            metrics[name] = glue_metrics(task, np.asarray(pred), np.asarray(dataset["labels"]))
    first = next(iter(metrics))
    # selection uses the first dev set (GLUE dev / MNLI matched / NER devel)
    return {"splits": metrics, "score": metrics[first]["score"]}


def run_one(plan: FinetunePlan, spec: RunSpec, data: TaskData, run_dir: Path) -> dict:
    from transformers import Trainer

    opts, tokenizer, dtype = plan.opts, plan.tokenizer, plan.dtype
    torch.manual_seed(spec.seed)
    model = load_task_model(opts.model, plan.model_path, plan.model_config, data, opts.exits, opts.pair_encoding,
                            opts.pooling)
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
        num_train_epochs=spec.epochs or 1, max_steps=spec.max_steps or -1, logging_steps=50,
        save_strategy="no", save_total_limit=1,  # checkpoints come from resumable.SaveEveryCallback
        disable_tqdm=False, optim="adamw_torch_fused", **length_grouping(opts.group_by_length))
    collator = task_collator(data.kind, opts.pair_encoding, tokenizer)
    if opts.teacher:
        trainer = run_task_distillation(opts, model, data, tokenizer, args, collator, run_dir, opts.pair_encoding,
                                        plan.teacher, opts.checkpoint_minutes)
    else:
        trainer = ordered_evaluation(Trainer)(
            model=model, args=args, train_dataset=data.train, data_collator=collator,
            callbacks=[tensorboard_callback(run_dir / "tensorboard"), *resumable_callbacks(opts.checkpoint_minutes)])
        trainer.train(resume_from_checkpoint=resume_point(run_dir / "trainer"))
    seconds = training_seconds(trainer)  # summed over an interrupted run's parts
    result = evaluate(trainer, data, plan.task)
    for checkpoints in ("trainer", "trainer-stage1"):
        shutil.rmtree(run_dir / checkpoints, ignore_errors=True)
    if opts.save_models != "none":
        folder = run_dir / ("adapter" if opts.adapter_tuning else "model")
        if opts.adapter_tuning:
            local = Path(plan.model_path)
            base_pointer = str(local.resolve()) if local.exists() else opts.model  # a folder, or a hub name
            head = ("token-classification" if plan.ner else "bi-encoder" if opts.pair_encoding == "bi"
                    else "sequence-classification")
            save_adapter_task(model, run_dir / "adapter", base_pointer, head, plan.task_name,
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


def run_finetune(opts: FinetuneOptions) -> dict:
    plan = build_plan(opts)  # every name, config and `auto` resolved here, once
    opts, out = plan.opts, Path(opts.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    data = prepare_data(plan.data_options(), plan.tokenizer)
    specs = plan_runs(opts, data.large)
    transfer = None
    if opts.teacher:  # task distillation: train on the teacher-labelled transfer set
        data.train, transfer = build_transfer_set(
            opts, plan.data_options(), TransferSources(plan.task, plan.teacher_path, plan.augment_mlm_path, plan.teacher), data,
            plan.tokenizer, out)
    results = [_run_or_reuse(plan, spec, data, label=f"{i}/{len(specs)}") for i, spec in enumerate(specs, 1)]
    chosen = None
    if opts.seeds_at_best and opts.seeds_at_best > 1:
        # Pick the configuration on dev with one seed per configuration, then repeat only it; the
        # reported score is its mean over seeds (a lucky single-seed configuration cannot take over).
        best = summarise(opts, results)["best"]
        chosen = config_key(best)
        specs += plan_seeds_at_best(opts, best, results)
        results += [_run_or_reuse(plan, spec, data, label=f"seed {spec.seed}") for spec in specs[len(results):]]
    summary = _summary_with_kept_models(plan, specs, results, chosen, data)
    summary["pair_encoding_choice"] = plan.pair_choice
    summary["majority_baseline"] = majority_baseline(data, opts.task.lower())
    if transfer:
        summary["transfer_set"] = {k: v for k, v in transfer.items() if k != "examples"}
    if opts.save_models == "best":
        for r in results:
            if r["run_id"] != summary["best"]["best_run"]:
                for sub in ("model", "adapter"):
                    shutil.rmtree(out / "runs" / r["run_id"] / sub, ignore_errors=True)
    write_json(out / "results.json", summary, allow_nan=False)  # never a bare NaN: results stay valid JSON
    return summary


def _summary_with_kept_models(plan: FinetunePlan, specs: list[RunSpec], results: list[dict], chosen, data: TaskData) -> dict:
    """The summary, once every run whose model --save-models keeps has it. A run reused from its
    record has no model when that was deleted or never copied (a record committed beside a study's
    results, a grid finished with --save-models none): it is trained again, and its new record (the
    score of the weights now on disk) replaces the old one. A retrained run may score otherwise and
    so move the best run to another record without a model: the check repeats until the best run
    is one whose weights were trained here, never a run named best with no model (each run is
    retrained at most once, so this ends)."""
    opts, out = plan.opts, Path(plan.opts.out)
    kept = "adapter" if opts.adapter_tuning else "model"
    retrained: set[int] = set()
    while True:
        summary = summarise(opts, results, chosen)
        best_run = summary["best"]["best_run"]
        missing = [i for i, r in enumerate(results) if opts.save_models != "none" and i not in retrained
                   and (opts.save_models == "all" or r["run_id"] == best_run)
                   and not (out / "runs" / r["run_id"] / kept).is_dir()]
        if not missing:
            return summary
        for i in missing:
            logger.info("%s: its record has no %s folder; training it again to keep its %s (its new record "
                        "replaces the old one)", results[i]["run_id"], kept, kept)
            results[i] = _run_or_reuse(plan, specs[i], data, label="rebuild", reuse=False)
            retrained.add(i)


def _run_or_reuse(plan: FinetunePlan, spec: RunSpec, data: TaskData, label: str, reuse: bool = True) -> dict:
    opts, out, identity = plan.opts, Path(plan.opts.out), plan.identity
    run_id = spec.run_id(opts.task.lower(), opts.adapter_tuning, options_hash(identity))
    record = out / "runs" / f"{run_id}.json"
    if reuse and record.exists():  # interrupted grids resume without redoing finished runs
        done = read_json(record, RUN_RECORD_FIELDS, f"Delete {record} to run it again.")
        if done.get("identity") != identity:  # only a hash collision or a hand-edited file gets here
            raise MiniAlbertError(f"{record} was computed with other options than this run's; move it away or "
                                  "choose another --out.")
        logger.info("[%s] %s: already done with identical options, reusing it", label, run_id)
        return done
    logger.info("[%s] %s", label, run_id)
    result = run_one(plan, spec, data, out / "runs" / run_id)
    result["run_id"], result["identity"] = run_id, identity
    result["versions"] = library_versions()  # recorded, not part of the identity
    write_json(record, result, allow_nan=False)
    return result
