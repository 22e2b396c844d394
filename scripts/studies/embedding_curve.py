"""Zero-shot STS-B against distilled tokens (docs/studies/embeddings.md): reads each `bench embed`
result named in the points (NAME=RUN: RUN/final/distillation.json gives the tokens,
docs/results/embeddings/student-NAME.json the scores), writes docs/results/embeddings/curve.json and
the figure."""

from __future__ import annotations

import json
from pathlib import Path

from minialbert.records import read_json, write_json

from .common import FIGURES, RESULTS, save_figure

RESULTS_DIR = RESULTS / "embeddings"


def curve(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = []
    for spec in args.points:
        name, run = spec.split("=", 1)
        tokens = read_json(Path(run) / "final" / "distillation.json")["distilled_tokens"]
        result = read_json(RESULTS_DIR / f"student-{name}.json")
        points.append({"name": name, "distilled_tokens": tokens, "spearman": result["spearman"],
                       "spearman_per_iterations": {k: v["spearman"] for k, v in result.get("depths", {}).items()}})
    points.sort(key=lambda p: p["distilled_tokens"])
    teacher = read_json(RESULTS_DIR / "demo-student-vs-teacher.json")["compare"]["minilm"]["spearman"]
    write_json(RESULTS_DIR / "curve.json", {"teacher_spearman": teacher, "points": points})
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    floor = min(p["distilled_tokens"] for p in points if p["distilled_tokens"]) / 4
    xs = [p["distilled_tokens"] or floor for p in points]
    for k in sorted({k for p in points for k in p["spearman_per_iterations"]}):
        ax.plot(xs, [p["spearman_per_iterations"].get(k) for p in points], "o-", label=f"student, {k} iteration(s)")
    ax.axhline(teacher, color="k", ls="--", label=f"teacher (MiniLM) {teacher:.1f}")
    ax.axhline(0.97 * teacher, color="grey", ls=":", label="0.97 of the teacher")
    ax.set_xscale("log")
    save_figure(fig, ax, args.figure, "Embedding student: zero-shot score against distilled tokens",
                "distilled tokens (non-padding; leftmost point: initialisation only)", "STS-B dev Spearman, zero-shot")
    print(json.dumps(points, indent=2))
    return 0


def add_commands(sub, defaults) -> None:
    e = sub.add_parser("curve", help="zero-shot STS-B against distilled tokens (figure + curve.json)")
    e.add_argument("points", nargs="+", metavar="NAME=RUN", help="bench embed result name and its distillation run")
    e.add_argument("--figure", default=str(FIGURES / "embedding-curve.png"))
    e.set_defaults(func=curve)
