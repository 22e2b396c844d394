"""`minialbert ablate`, `minialbert plot-attention`, `minialbert plot-losses`."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    from ..options import int_list as _int_list

    p = sub.add_parser(
        "ablate", help="Distil one student per loss/embedding variant, fine-tune each, tabulate (Tables 3-4).",
        description="Runs the same recipe, budget, seed and data for each variant (full, hidden, attention, none, "
                    "embedding-loss, full-rank, no-adapters, mlm-only), fine-tunes every student on the listed tasks and writes "
                    "OUT/ablation.md and OUT/ablation.json (score per task, average, drop vs full). "
                    "Re-running resumes: finished students and fine-tuning runs are reused.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--recipe", default="cpu-demo", help="distillation recipe (name or YAML)")
    p.add_argument("--variants", default="full,hidden,attention,none",
                   help="comma list. full/hidden/attention/none: alignment losses (Table 3); embedding-loss, "
                        "full-rank (E = H): Table 4; no-adapters: the student without adapters; mlm-only: "
                        "no teacher at all (random start, MLM loss only), the baseline distillation must beat")
    p.add_argument("--budget-steps", type=int, required=True, help="distillation steps per variant")
    p.add_argument("--tasks", required=True, help="comma list: GLUE names and ner:NAME (e.g. rte,stsb,ner:NCBI-disease)")
    p.add_argument("--glue-dir", default=None, help="GLUE folder (official TSVs); default: the hub")
    p.add_argument("--ner-dir", default=None, help="folder holding the NER data sets")
    p.add_argument("--finetune-steps", type=int, default=200)
    p.add_argument("--finetune-lr", type=float, default=5e-4)
    p.add_argument("--max-length", type=int, default=128, help="fine-tuning sequence length")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a recipe field for every variant (repeatable), e.g. --set batch_size=8")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run_ablate)

    p = sub.add_parser("plot-attention", help="Student vs teacher attention maps (like the paper's Figure 3).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--teacher", required=True, help="teacher name/folder ('minilm' = packaged)")
    p.add_argument("--student", required=True, help="student folder (e.g. OUT/final)")
    p.add_argument("--text", required=True)
    p.add_argument("--layer-map", type=_int_list, default=None,
                   help="teacher layer per iteration; default: the student's distillation.json, else uniform")
    p.add_argument("--iterations", type=_int_list, default=None, help="student iterations to show (default first, middle, last)")
    p.add_argument("--max-heads", type=int, default=12)
    p.add_argument("--out", required=True, help="PNG file")
    p.set_defaults(func=run_plot_attention)

    p = sub.add_parser("plot-losses", help="Loss curves of a distillation run from its log.jsonl.")
    p.add_argument("run_dir", nargs="+", help="the --out folder(s) of `minialbert distill` (several: overlaid)")
    p.add_argument("--out", required=True, help="PNG file")
    p.set_defaults(func=run_plot_losses)


def _parse_sets(items):
    import yaml

    from ..distillation.recipe import DistillRecipe
    from ..errors import MiniAlbertError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in DistillRecipe.names():
            raise MiniAlbertError(f"--set {item!r}: expected FIELD=VALUE with a recipe field "
                                  f"({', '.join(DistillRecipe.names())}).")
        out[key] = yaml.safe_load(value)
    return out


def run_ablate(args) -> int:
    from ..analysis.ablate import parse_tasks, render_ablation, run_ablation
    from ..distillation.recipe import resolve_recipe

    recipe = resolve_recipe(args.recipe, _parse_sets(args.set)).recipe
    report = run_ablation(recipe, [v.strip() for v in args.variants.split(",") if v.strip()], args.budget_steps,
                          parse_tasks(args.tasks, args.glue_dir, args.ner_dir), args.out, args.finetune_steps,
                          args.finetune_lr, args.max_length)
    print(render_ablation(report))
    return 0


def run_plot_attention(args) -> int:
    from ..analysis.plots import plot_attention

    info = plot_attention(args.teacher, args.student, args.text, args.out, args.layer_map, args.iterations,
                          args.max_heads)
    print(f"Wrote {args.out}: " + json.dumps(info))
    return 0


def run_plot_losses(args) -> int:
    from ..analysis.plots import plot_losses

    shown = plot_losses(args.run_dir, args.out)
    print(f"Wrote {args.out} ({', '.join(shown)})")
    return 0
