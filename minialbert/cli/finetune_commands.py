"""`minialbert finetune`, `minialbert report` and `minialbert bench finetune`."""

from __future__ import annotations

import argparse
import json


def register(sub, bench_sub) -> None:
    p = sub.add_parser(
        "finetune", help="Fine-tune (fully or adapters only) and evaluate on GLUE or biomedical NER.",
        description="Full fine-tuning or adapter tuning of a MiniALBERT student (or any Hugging Face encoder, for "
                    "baselines) on a GLUE task or BIO-format NER, on the Hugging Face Trainer. Writes "
                    "OUT/runs/<run>.json per run, OUT/results.json (best configuration by dev score), and the "
                    "best run's model (full) or adapter-only task file. Re-running resumes an interrupted grid.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="MiniALBERT checkpoint folder, any HF encoder, or 'minilm'")
    p.add_argument("--task", required=True, help="cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli, or ner")
    p.add_argument("--data-dir", default=None, help="GLUE folder (official TSVs) or NER folder; default: the hub")
    p.add_argument("--adapter-tuning", action="store_true", help="train only adapters + head (docs/method.md section 4)")
    p.add_argument("--lr", type=float, nargs="+", default=None, help="learning rate(s); default by grid")
    p.add_argument("--batch-size", type=int, default=None, help="default: 32 large tasks, 16 small tasks")
    p.add_argument("--epochs", type=float, default=None, help="default: 3 (grid paper: 3 large / 5 small)")
    p.add_argument("--max-steps", type=int, default=None, help="optimiser steps (overrides --epochs)")
    p.add_argument("--runs", type=int, default=None, help="seeds per configuration (grid paper: 1 large / 3 small)")
    p.add_argument("--grid", choices=["paper", "none"], default="none",
                   help="paper: lr {5e-5, 5e-4, 1e-3} with the paper's batch/epochs/runs")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: bf16 on a GPU that supports it; on a CPU whichever of fp32/bf16 a matmul probe finds faster")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="fraction of the steps with a linear warm-up")
    p.add_argument("--seeds-at-best", type=int, default=None,
                   help="pick the best configuration with one seed each, then repeat it to N seeds "
                        "(results.json reports its mean and standard deviation)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--label-all-subtokens", action="store_true", help="NER: label every sub-token, not only the first")
    p.add_argument("--max-train-samples", type=int, default=None, help="use a subset of the training set")
    p.add_argument("--save-models", choices=["best", "all", "none"], default="best")
    p.add_argument("--group-by-length", action=argparse.BooleanOptionalAction, default=True,
                   help="batch examples of similar length together (the Trainer's length-grouped sampler): much "
                        "less padding; --no-group-by-length for plain random batches")
    p.add_argument("--exits", default="none",
                   help="elastic depth (MiniALBERT): 'all' trains a classifier on every iteration's output (loss of "
                        "exit i weighted by i), or a list such as 2,4; then predict/export/bench depth can stop "
                        "after any K iterations")
    p.add_argument("--pair-encoding", choices=["cross", "bi"], default="cross",
                   help="sentence pairs: 'cross' encodes [CLS] a [SEP] b together; 'bi' encodes each sentence alone "
                        "with the same encoder (siamese, Sentence-BERT): STS-B regresses cos(u, v) to the score, "
                        "classification tasks use a linear layer on (u, v, |u-v|, u*v)")
    p.add_argument("--pooling", choices=["mean", "cls"], default="mean",
                   help="bi-encoder sentence embedding: mean of the token states (as the MiniLM teacher) or [CLS]")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run_finetune_cmd)

    p = sub.add_parser("report", help="Paper-style table (Tables 1-2) from finetune result folders.",
                       description="Collects results.json files and prints one row per (model, adapter tuning) with "
                                   "a column per task (GLUE dev score, NER test F1, in percent), the average, and the "
                                   "training seconds of the reported configurations summed over the tasks. The "
                                   "average is left empty for a row that misses a shown task; use --tasks to compare "
                                   "rows on the tasks they share.")
    p.add_argument("result_dirs", nargs="+", help="folders (searched recursively) or results.json files")
    p.add_argument("--format", choices=["md", "csv", "json"], default="md")
    p.add_argument("--paper", action="store_true", help="append the paper's reference rows (averages)")
    p.add_argument("--tasks", type=lambda s: [t.strip() for t in s.split(",") if t.strip()], default=None,
                   help="comma-separated columns to show, in this order, e.g. sst2,mrpc,ner:NCBI-disease "
                        "(default: every task found)")
    p.add_argument("--std", action="store_true",
                   help="show 'mean ± sample std (seeds)' for tasks run with several seeds")
    p.set_defaults(func=run_report)

    p = bench_sub.add_parser("finetune", help="Seconds per step: full fine-tuning vs adapter tuning, same run.",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="minialbert-768", help="preset (random weights) or checkpoint folder")
    p.add_argument("--task", default="sst2")
    p.add_argument("--data-dir", default=None, help="GLUE folder with the task's train.tsv")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_bench_finetune)


def run_finetune_cmd(args) -> int:
    from ..finetune.runner import FinetuneOptions, run_finetune

    summary = run_finetune(FinetuneOptions(
        model=args.model, task=args.task, out=args.out, data_dir=args.data_dir, adapter_tuning=args.adapter_tuning,
        learning_rates=args.lr, batch_size=args.batch_size, epochs=args.epochs, max_steps=args.max_steps,
        runs=args.runs, grid=args.grid, seed=args.seed, dtype=args.dtype, max_length=args.max_length,
        label_all_subtokens=args.label_all_subtokens, max_train_samples=args.max_train_samples,
        save_models=args.save_models, warmup_ratio=args.warmup_ratio, seeds_at_best=args.seeds_at_best,
        exits=args.exits, group_by_length=args.group_by_length, pair_encoding=args.pair_encoding,
        pooling=args.pooling))
    best = summary["best"]
    print(f"\n{summary['task']}: best score {100 * summary['score']:.2f} (lr {best['learning_rate']:g}, batch "
          f"{best['batch_size']}, {best['runs']} run(s)); trainable parameters {summary['trainable_parameters']:,}")
    print(json.dumps(best["metrics_mean"], indent=2))
    print(f"Results: {args.out}/results.json, per run: {args.out}/runs/")
    return 0


def run_report(args) -> int:
    from ..finetune.report import build_table, collect, render

    header, table = build_table(collect(args.result_dirs), args.tasks, args.std)
    print(render(header, table, args.format, args.paper))
    return 0


def run_bench_finetune(args) -> int:
    from ..finetune.bench import bench_finetune

    result = bench_finetune(args.model, args.task, args.data_dir, args.steps, args.batch_size, args.max_length)
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k:>32}: {v}" for k, v in result.items()))
    return 0
