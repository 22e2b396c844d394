"""`minialbert finetune`, `minialbert report` and `minialbert bench finetune`."""

from __future__ import annotations

import argparse
import json

from ..finetune.options import BenchFinetuneOptions, FinetuneOptions
from ..finetune.report import ReportOptions
from ..options import add_dataclass_flags, from_args, options_kwargs


def register(sub, bench_sub) -> None:
    p = sub.add_parser(
        "finetune", help="Fine-tune (fully or adapters only) and evaluate on GLUE or biomedical NER.",
        description="Full fine-tuning or adapter tuning of a MiniALBERT student (or any Hugging Face encoder, for "
                    "baselines) on a GLUE task or BIO-format NER, on the Hugging Face Trainer. Writes "
                    "OUT/runs/<run>.json per run, OUT/results.json (best configuration by dev score), and the "
                    "best run's model (full) or adapter-only task file. Re-running resumes an interrupted grid.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_flags(p, FinetuneOptions)  # one flag per option field, help and choices from the field
    p.set_defaults(func=run_finetune_cmd)

    p = sub.add_parser("report", help="Paper-style table (Tables 1-2) from finetune result folders.",
                       description="Collects results.json files and prints one row per (model, adapter tuning) with "
                                   "a column per task (GLUE dev score, NER test F1, in percent), the average, and the "
                                   "training seconds of the reported configurations summed over the tasks. The "
                                   "average is left empty for a row that misses a shown task; use --tasks to compare "
                                   "rows on the tasks they share.")
    add_dataclass_flags(p, ReportOptions)
    p.set_defaults(func=run_report)

    p = bench_sub.add_parser("finetune", help="Seconds per step: full fine-tuning vs adapter tuning, same run.",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_flags(p, BenchFinetuneOptions)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_bench_finetune)


def run_finetune_cmd(args) -> int:
    from ..finetune.runner import run_finetune

    summary = run_finetune(from_args(FinetuneOptions, args))
    best = summary["best"]
    print(f"\n{summary['task']}: best score {100 * summary['score']:.2f} (lr {best['learning_rate']:g}, batch "
          f"{best['batch_size']}, {best['runs']} run(s)); trainable parameters {summary['trainable_parameters']:,}")
    print(json.dumps(best["metrics_mean"], indent=2))
    print(f"Results: {args.out}/results.json, per run: {args.out}/runs/")
    return 0


def run_report(args) -> int:
    from ..finetune.report import build_table, collect, render, retention_table

    if args.retention:
        header, table = retention_table(collect(args.result_dirs), args.retention, args.tasks)
    else:
        header, table = build_table(collect(args.result_dirs), args.tasks, args.std)
    print(render(header, table, args.format, args.paper and not args.retention))
    return 0


def run_bench_finetune(args) -> int:
    from ..finetune.bench import bench_finetune

    result = bench_finetune(**options_kwargs(BenchFinetuneOptions, args))
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k:>32}: {v}" for k, v in result.items()))
    return 0
