"""`minialbert ablate`: one student per variant with the same budget, seed and data, each fine-tuned
on the same tasks; a Table 3/4-style report (docs/method.md section 2). Interrupted studies resume:
finished distillations and fine-tuning runs are reused."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MiniAlbertError
from ..options import max_length
from ..records import write_json

# variant -> recipe overrides (Table 3: alignment losses; Table 4: embedding loss, full-rank embeddings)
VARIANTS = {
    "full": {"alignment": "full"},
    "hidden": {"alignment": "hidden"},
    "attention": {"alignment": "attention"},
    "none": {"alignment": "none"},
    "embedding-loss": {"alignment": "full", "embedding_weight": 3.0},
    "full-rank": {"alignment": "full", "embedding_size": "H"},
    # Tables 1-2: the student without adapters (a plain ALBERT-style recursion)
    "no-adapters": {"alignment": "full", "adapters": False},
    # the no-teacher baseline: same architecture, data and steps, trained with MLM only from a random
    # start (the teacher supplies only its tokenizer and width; its forward pass is skipped)
    "mlm-only": {"alignment": "none", "output_weight": 0.0, "embedding_weight": 0.0,
                 "embedding_init": "random", "shared_layer_init": 0},
}


@dataclass
class AblateOptions:
    """`minialbert ablate`."""
    budget_steps: int = field(metadata={"required": True, "help": "distillation steps per variant"})
    tasks: str = field(metadata={"required": True, "help": "comma list: GLUE names and ner:NAME (e.g. "
                                                           "rte,stsb,ner:NCBI-disease)"})
    out: str = field(metadata={"required": True, "help": "output folder: one student and its fine-tuning "
                                                           "runs per variant, ablation.md, ablation.json"})
    recipe: str = field(default="cpu-demo", metadata={"help": "distillation recipe (name or YAML)"})
    variants: str = field(default="full,hidden,attention,none", metadata={"help": (
        "comma list. full/hidden/attention/none: alignment losses (Table 3); embedding-loss, full-rank (E = H): "
        "Table 4; no-adapters: the student without adapters; mlm-only: no teacher at all (random start, MLM loss "
        "only), the baseline distillation must beat")})
    glue_dir: str | None = field(default=None, metadata={"help": "GLUE folder (official TSVs); default: the hub"})
    ner_dir: str | None = field(default=None, metadata={"help": "folder holding the NER data sets"})
    finetune_steps: int = field(default=200, metadata={"help": "fine-tuning steps per student and task"})
    finetune_lr: float = field(default=5e-4, metadata={"help": "fine-tuning learning rate (one value for every "
                                                               "variant, so the comparison is fair)"})
    max_length: int = field(default=128, metadata={"type": max_length, "help": "fine-tuning sequence length"})
    set: list[str] = field(default_factory=list, metadata={"action": "append", "metavar": "FIELD=VALUE", "help": (
        "override a recipe field for every variant (repeatable), e.g. --set batch_size=8")})


def parse_tasks(tasks: str, glue_dir, ner_dir) -> list[tuple[str, str, str | None]]:
    """'rte,stsb,ner:NCBI-disease' -> [(label, task, data_dir)]."""
    out = []
    for t in [x.strip() for x in tasks.split(",") if x.strip()]:
        if t.startswith("ner:"):
            if not ner_dir:
                raise MiniAlbertError(f"Task {t} needs --ner-dir (the folder holding {t[4:]}/train.tsv ...).")
            out.append((t, "ner", str(Path(ner_dir) / t[4:])))
        else:
            out.append((t, t, glue_dir))
    return out


def run_ablation(recipe, variants: list[str], budget_steps: int, tasks, out_dir, finetune_steps: int = 200,
                 finetune_lr: float = 5e-4, max_length: int = 128) -> dict:
    from ..distillation.recipe import apply_overrides, resolve_layer_choices, teacher_depth
    from ..distillation.run_folder import check_same_code_numbers
    from ..distillation.trainer import run_distillation
    from ..finetune.options import FinetuneOptions
    from ..finetune.runner import run_finetune

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise MiniAlbertError(f"Unknown variants {unknown}; choose from {', '.join(VARIANTS)}.")
    out = Path(out_dir)
    rows = {}
    for variant in variants:
        overrides = dict(VARIANTS[variant], max_steps=budget_steps)
        if overrides.get("embedding_size") == "H":
            overrides["embedding_size"] = recipe.hidden_size or _teacher_width(recipe.teacher)
        # layer choices relative to the teacher ('last', fractions) as the numbers a finished run stores
        variant_recipe = resolve_layer_choices(apply_overrides(recipe, overrides), lambda: teacher_depth(recipe.teacher))
        distill_dir = out / variant / "distill"
        finished = distill_dir / "final" / "distillation.json"
        if finished.exists():  # reuse a finished student only if it was distilled with exactly this recipe and code
            check_same_code_numbers(distill_dir)
            _check_same_recipe(json.loads(finished.read_text())["recipe"], variant_recipe, finished)
        else:
            run_distillation(variant_recipe, distill_dir, resume=distill_dir.exists())
        scores = {}
        for label, task, data_dir in tasks:
            summary = run_finetune(FinetuneOptions(
                model=str(distill_dir / "final"), task=task, data_dir=data_dir, max_steps=finetune_steps,
                learning_rates=[finetune_lr], max_length=max_length, seed=recipe.seed, save_models="none",
                out=str(out / variant / "finetune" / label.replace(":", "-"))))
            score = summary["best"]["metrics_mean"]["test"]["f1"] if task == "ner" else summary["score"]
            scores[label] = round(100 * score, 2)
        rows[variant] = {"scores": scores, "average": round(sum(scores.values()) / max(len(scores), 1), 2),
                         "recipe": dataclasses.asdict(variant_recipe)}
    reference = rows.get("full", {}).get("average")
    for row in rows.values():
        row["drop_vs_full"] = None if reference is None else round(row["average"] - reference, 2)
    report = {"budget_steps": budget_steps, "tasks": [t[0] for t in tasks], "variants": rows}
    write_json(out / "ablation.json", report)
    (out / "ablation.md").write_text(render_ablation(report) + "\n")
    return report


def _check_same_recipe(before: dict, now, where: Path) -> None:
    from ..distillation.run_folder import recipe_differences

    changed = recipe_differences(before, now)
    if changed:
        raise MiniAlbertError(f"{where} holds a student distilled with other settings ({', '.join(changed)}); use "
                              "another --out for this budget, or delete that variant's folder to distil it again.")


def _teacher_width(teacher: str) -> int:
    from transformers import AutoConfig

    from ..checkpoints import resolve_model_name

    return AutoConfig.from_pretrained(resolve_model_name(teacher)).hidden_size


def render_ablation(report: dict) -> str:
    tasks = report["tasks"]
    lines = ["| variant | " + " | ".join(tasks) + " | average | drop vs full |", "|---" * (len(tasks) + 3) + "|"]
    for name, row in report["variants"].items():
        drop = "–" if row["drop_vs_full"] is None else f"{row['drop_vs_full']:+.2f}"
        lines.append(f"| {name} | " + " | ".join(f"{row['scores'][t]:.2f}" for t in tasks)
                     + f" | {row['average']:.2f} | {drop} |")
    return "\n".join(lines)
