"""`minialbert distill`, `minialbert fit-head` and `minialbert bench distill`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..distillation.bench import DistillBenchOptions
from ..distillation.fit_head import FitHeadOptions
from ..options import add_dataclass_flags, from_args, options_kwargs
from ..runtime import DTYPE_HELP


HELP = {
    "teacher": ("teacher: 'minilm' (packaged, offline), 'mpnet' (offline once `pip install 'minialbert[mpnet]'`), "
                "a local folder, or a hub name (needs a network)"),
    "preset": "student preset supplying E, N and adapters (e.g. minialbert-312); H, heads, FFN, V follow the teacher",
    "iterations": "recursion steps N of the student",
    "embedding_size": "embedding width E (E < H adds an E->H projection)",
    "adapters": "per-iteration bottleneck adapters (--no-adapters to leave them out)",
    "adapter_reduction_factor": "adapter size: the bottleneck is H / r wide (default: the preset's, else 16; "
                                "smaller r = bigger adapters)",
    "layer_groups": "distinct layers g (ALBERT's num_hidden_groups): iteration i runs layer floor(i g / N). Default 1 "
                    "(one shared layer); g = --iterations makes a plain student of N unique layers, each copied from "
                    "its mapped teacher layer (layer dropping, as DistilBERT)",
    "relaxation_rank": "relaxed recursion: per iteration, a rank-r delta on each linear map of the shared layer, "
                       "started from the truncated SVD of (its mapped teacher layer - the shared layer); 0 = strict "
                       "sharing. Needs a layer map over distinct teacher layers to differ from 0",
    "hidden_size": "force a student width different from the teacher's (needs --project-hidden)",
    "num_attention_heads": "force a head count different from the teacher's (needs --average-heads)",
    "embedding_init": "teacher (copy if E == H, truncated SVD if E < H), model2vec (E < H: a static distillation "
                      "of the teacher's outputs, PCA to E), random, or a model of width E",
    "shared_layer_init": "shared layer from a teacher layer: a number (1-based), 'last', or a fraction of the "
                         "teacher's depth with a decimal point (0.5 = the middle layer, rounded up; 1.0 = the last); "
                         "'average' (mean of the mapped teacher layers) or 'average:2,4,last'; 0 = random. "
                         "'last' and fractions become numbers before the run is stored",
    "layer_map": "comma-separated teacher layer per student iteration: numbers (1-based), 'last' or fractions of "
                 "the teacher's depth (e.g. last,last,last or 0.5,1.0); default uniform i*L/N",
    "project_hidden": "learn a linear map for the hidden loss when widths differ (TinyBERT style)",
    "average_heads": "compare head-averaged attention maps when head counts differ",
    "alignment": "alignment losses: full | hidden | attention | none (ablations, docs/method.md Table 3)",
    "sentence_weight": "weight of the sentence-embedding loss: 1 - cos between the student's and the teacher's "
                       "mean-pooled final states (embedding students; 0 = off)",
    "corpus": "wiki-offline, a .txt/.jsonl file or folder, or hf:NAME[:CONFIG][:SPLIT]; several joined by + "
              "(e.g. wiki-offline+data/biomed.txt) are used together",
    "blank_line_docs": "text files: documents are separated by blank lines (default: one per line)",
    "streaming": "stream an hf: corpus instead of downloading it whole (needs --max-steps)",
    "max_docs": "use only the first N documents of the corpus",
    "pack": "pack consecutive documents into full windows separated by [SEP] (no padding; "
            "--stride and --windows-per-doc then do not apply)",
    "batch_size": "examples per device per step",
    "inherited_lr_scale": "learning rate of the parts initialised from the teacher (embeddings, projection, shared "
                          "layer) as a fraction of --learning-rate; the new parts (adapters, MLM head) train at the "
                          "full rate",
    "max_steps": "optimiser steps (overrides --epochs)",
    "dtype": DTYPE_HELP,
    "save_steps": "a checkpoint every N steps; a value below 1 is a fraction of --max-steps",
    "zero_shot_every": "score the student zero-shot on the STS-B pairs (--zero-shot-split) every N steps (and at steps 0 and the "
                       "end), into OUT/log.jsonl; 0 = off",
    "zero_shot_data": "the GLUE folder (or its STS-B folder) for --zero-shot-every",
    "zero_shot_split": "the STS-B pairs --zero-shot-every scores: dev (to report) or train (to choose between runs "
                       "without tuning to dev)",
    "zero_shot_pairs": "score an evenly spaced subset of this many pairs (all when left out): cheaper curves for a "
                       "slow student, e.g. 1000 train pairs at the paper's geometry",
    "notes": argparse.SUPPRESS,
}


def register(sub) -> None:
    from ..distillation.recipe import DistillRecipe, available_recipes

    p = sub.add_parser(
        "distill", help="Distil a teacher into a MiniALBERT student (default: the offline CPU demo).",
        description="Layer-to-layer distillation (docs/method.md sections 2-3). With no arguments runs the "
                    "'cpu-demo' recipe offline: packaged MiniLM teacher, wiki-offline corpus. Every recipe "
                    "field can be overridden by its flag. Writes OUT/final (student + tokenizer + "
                    "distillation.json), OUT/log.jsonl, OUT/tensorboard and OUT/checkpoints.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--recipe", default="cpu-demo",
                   help=f"shipped recipe ({', '.join(available_recipes())}) or a YAML file. Precedence, field by "
                        "field: an explicit flag, then --preset (E, N, adapters), then the recipe, then the defaults")
    p.add_argument("--out", default="runs/distill", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in OUT")
    p.add_argument("--overwrite", action="store_true",
                   help="OUT holds an earlier run: delete it (its final student, checkpoints, log, TensorBoard "
                        "files) and start afresh. Without --resume or --overwrite such an OUT is refused")
    add_dataclass_flags(p, DistillRecipe, help=HELP, defaults_none=True)  # the recipe's value stands unless given
    p.set_defaults(func=run_distill)

    p = sub.add_parser(
        "fit-head", help="Train an MLM head on a frozen encoder that has none (e.g. the packaged MiniLM).",
        description="Completes an encoder without a masked-LM head (sentence-embedding models such as the "
                    "packaged MiniLM): trains only a head of the encoder's family's kind (dense, activation, "
                    "LayerNorm, decoder tied to the frozen word embeddings; minialbert/model/families.py), reports masked-token accuracy before and after on held-out "
                    "windows, and saves a full AutoModelForMaskedLM checkpoint with its tokenizer.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_flags(p, FitHeadOptions)
    p.set_defaults(func=run_fit_head)

    bench = sub.add_parser("bench", help="Benchmarks that print figures measured in one run.")
    bsub = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    p = bsub.add_parser(
        "distill", help="Time full distillation steps on random weights (no download).",
        description="Builds a randomly initialised teacher of a standard shape and a student, and times full "
                    "distillation steps (teacher forward, student forward+backward, all losses, optimiser "
                    "step). Also checks the masked-only loss path against distillation_losses on full tensors.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_flags(p, DistillBenchOptions)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_bench_distill)
    return bsub


def run_distill(args) -> int:
    from ..distillation.recipe import DistillRecipe, resolve_recipe
    from ..distillation.trainer import loss_summary, run_distillation

    resolved = resolve_recipe(args.recipe, {n: getattr(args, n) for n in DistillRecipe.names()})
    for line in resolved.overridden:
        print(f"note: {line} (the explicit preset wins; give the flag to choose otherwise)")
    print(f"Settings ({len([s for s in resolved.sources.values() if s != 'default'])} fields not at their "
          f"defaults):\n{resolved.report()}")
    recipe = resolved.recipe
    summary = run_distillation(recipe, args.out, resume=args.resume, sources=resolved.sources,
                               overwrite=args.overwrite)
    out = Path(args.out)
    print(f"\nDistilled {summary['steps']} steps in {summary['train_seconds_this_run']:.0f} s "
          f"(teacher {recipe.teacher}, corpus {recipe.corpus}, output loss "
          f"{'on' if summary['output_loss'] else 'off: teacher has no MLM head'}).")
    print(loss_summary(out / "log.jsonl"))
    print(f"Student: {out / 'final'}  (load with AutoModelForMaskedLM.from_pretrained after `import minialbert`)")
    print(f"Logs: {out / 'log.jsonl'}, TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    return 0


def run_fit_head(args) -> int:
    from ..distillation.fit_head import fit_mlm_head

    report = fit_mlm_head(**options_kwargs(FitHeadOptions, args))
    print(json.dumps(report, indent=2))
    return 0


def run_bench_distill(args) -> int:
    from ..distillation.bench import bench_distill

    result = bench_distill(from_args(DistillBenchOptions, args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>28}: {v}")
    return 0
