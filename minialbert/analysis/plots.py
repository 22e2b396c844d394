"""Figures with matplotlib: loss curves from log.jsonl, and student-vs-teacher attention maps."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..distillation.runlog import read_log
from ..errors import MiniAlbertError
from .options import PlotAttentionOptions, PlotLossesOptions  # noqa: F401  (options apart: the CLI reads them without torch)

COMPONENTS = ("loss", "mlm", "attention", "hidden", "output", "embedding")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_losses(run_dirs, out_png) -> list[str]:
    """One panel per logged loss component (their scales differ by orders of magnitude); several
    runs are overlaid, one line each, to compare them (e.g. two initialisations)."""
    runs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    logs = {}
    for run_dir in runs:
        log = Path(run_dir) / "log.jsonl"
        if not log.is_file():
            raise MiniAlbertError(f"{log} does not exist; give the --out folder of a `minialbert distill` run.")
        logs[Path(run_dir).name] = read_log(log)
    present = [c for c in (*COMPONENTS, "zero_shot_spearman") if any(c in r for rows in logs.values() for r in rows)]
    if not present:
        raise MiniAlbertError(f"{', '.join(str(Path(r) / 'log.jsonl') for r in runs)} hold no logged losses yet.")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present), 2.8), squeeze=False)
    for ax, name in zip(axes[0], present):
        for label, rows in logs.items():
            pts = [(r["step"], r[name]) for r in rows if name in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", lw=1.2, label=label)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if len(logs) > 1:
        axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Distillation losses: {', '.join(logs)}")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return present


@torch.no_grad()
def plot_attention(teacher_name, student_dir, text, out_png, layer_map=None, iterations=None, max_heads=12) -> dict:
    """Rows: for each chosen student iteration, its heads, then the heads of the teacher layer it is
    mapped to; columns: heads. Token labels on the axes of the first column and last row."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from ..distillation.losses import check_layer_map, uniform_layer_map
    from ..distillation.teacher import load_teacher

    student = AutoModelForMaskedLM.from_pretrained(student_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    teacher = load_teacher(teacher_name)
    N, L = student.config.num_hidden_layers, teacher.num_layers
    if layer_map is None:
        info = Path(student_dir) / "distillation.json"
        layer_map = json.loads(info.read_text())["layer_map"] if info.exists() else uniform_layer_map(N, L)
    layer_map = check_layer_map(layer_map, N, L)
    iterations = iterations or sorted({1, (N + 1) // 2, N})
    if any(not 1 <= i <= N for i in iterations):
        raise MiniAlbertError(f"--iterations must lie in 1..{N}.")
    enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=32)
    s_maps = student(**enc, output_attentions=True).attentions
    _, t_maps, _ = teacher.forward(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    heads = min(max_heads, s_maps[0].shape[1], t_maps[0].shape[1])
    plt = _pyplot()
    grid = []
    for i in iterations:
        grid += [(f"student iter {i}", s_maps[i - 1][0]), (f"teacher layer {layer_map[i - 1]}", t_maps[layer_map[i - 1] - 1][0])]
    size = 1.6 + 0.06 * len(tokens)
    fig, axes = plt.subplots(len(grid), heads, figsize=(size * heads, size * len(grid)), squeeze=False)
    for r, (label, maps) in enumerate(grid):
        for h in range(heads):
            ax = axes[r][h]
            ax.imshow(maps[h].float().numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if h == 0:
                ax.set_ylabel(label, fontsize=8)
                ax.set_yticks(range(len(tokens)), tokens, fontsize=5)
            if r == len(grid) - 1:
                ax.set_xticks(range(len(tokens)), tokens, fontsize=5, rotation=90)
            if r == 0:
                ax.set_title(f"head {h + 1}", fontsize=8)
    fig.suptitle(f"Attention maps: {Path(student_dir).name} vs {teacher_name}\n{text}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return {"iterations": iterations, "teacher_layers": [layer_map[i - 1] for i in iterations], "heads": heads,
            "tokens": len(tokens)}
