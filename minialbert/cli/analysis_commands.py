"""`minialbert ablate`, `minialbert plot-attention`, `minialbert plot-losses`."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    from ..analysis.ablate import AblateOptions
    from ..analysis.options import PlotAttentionOptions, PlotLossesOptions
    from ..options import add_dataclass_flags

    p = sub.add_parser(
        "ablate", help="Distil one student per loss/embedding variant, fine-tune each, tabulate (Tables 3-4).",
        description="Runs the same recipe, budget, seed and data for each variant (full, hidden, attention, none, "
                    "embedding-loss, full-rank, no-adapters, mlm-only), fine-tunes every student on the listed tasks and writes "
                    "OUT/ablation.md and OUT/ablation.json (score per task, average, drop vs full). "
                    "Re-running resumes: finished students and fine-tuning runs are reused.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_flags(p, AblateOptions)
    p.set_defaults(func=run_ablate)

    p = sub.add_parser("plot-attention", help="Student vs teacher attention maps (like the paper's Figure 3).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_flags(p, PlotAttentionOptions)
    p.set_defaults(func=run_plot_attention)

    p = sub.add_parser("plot-losses", help="Loss curves of a distillation run from its log.jsonl.")
    add_dataclass_flags(p, PlotLossesOptions)
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
