"""How general distillation starts (docs/studies/embeddings.md): the zero-shot STS-B score of the
student (`distill --zero-shot-every`, the `bench embed` score) over the first steps, for the
`cpu-demo` recipe and one variant each of what could destroy the initialisation (learning-rate
peak and warm-up, the teacher-initialised parts' rate, the MLM loss, the attention loss, the layer
map, the shared layer's initialisation, the sentence loss), then the before/after curves over 400
steps with two distillation seeds, then the recipe probes (600 steps) that chose the released
recipe. Results (small JSON: the curve rows of each run's log.jsonl, its settings and tokens) in
docs/results/distillation-start/."""

from __future__ import annotations

import json
from pathlib import Path

from minialbert.records import read_json, read_jsonl, write_json

from .common import FIGURES, RESULTS, save_figure
from .jobs import Job, run_jobs

RESULTS_DIR = RESULTS / "distillation-start"
MIX = "wiki-offline+{biomed}"
# name -> (steps, score every, extra distill flags); every run is the cpu-demo recipe otherwise
PROBES = {
    "base": (100, 10, []), "lr1e-4": (100, 10, ["--learning-rate", "1e-4"]),
    "lr1e-3": (100, 10, ["--learning-rate", "1e-3"]), "warm0": (100, 10, ["--warmup-steps", "0"]),
    "warm100": (100, 10, ["--warmup-steps", "100"]), "inh0.1": (100, 10, ["--inherited-lr-scale", "0.1"]),
    "inh0": (100, 10, ["--inherited-lr-scale", "0"]), "mlm0": (100, 10, ["--mlm-weight", "0"]),
    "hidden": (100, 10, ["--alignment", "hidden"]), "map456": (100, 10, ["--layer-map", "4,5,6"]),
    "map666": (100, 10, ["--layer-map", "6,6,6"]), "avg": (100, 10, ["--shared-layer-init", "average"]),
    "sent3": (100, 10, ["--sentence-weight", "3"]), "sent10": (100, 10, ["--sentence-weight", "10"]),
    "sent30": (100, 10, ["--sentence-weight", "30"]),
    "sent10-al1": (100, 10, ["--sentence-weight", "10", "--alignment-weight", "1"]),
    "sent10-nopack": (100, 10, ["--sentence-weight", "10", "--no-pack"]),
    "map666-sent3": (100, 10, ["--layer-map", "6,6,6", "--sentence-weight", "3"]),
    "map666-warm100": (100, 10, ["--layer-map", "6,6,6", "--warmup-steps", "100"]),
    "map666-lr2e-4": (100, 10, ["--layer-map", "6,6,6", "--learning-rate", "2e-4"]),
    "map666-inh0.3": (100, 10, ["--layer-map", "6,6,6", "--inherited-lr-scale", "0.3"]),
}
CURVES = {  # before / after, two distillation seeds each
    "curve-base-s42": (400, 25, []), "curve-base-s43": (400, 25, ["--seed", "43"]),
    "curve-map666-s42": (400, 25, ["--layer-map", "6,6,6"]),
    "curve-map666-s43": (400, 25, ["--layer-map", "6,6,6", "--seed", "43"]),
}
RECIPES = {  # the released recipe's choices, at equal tokens
    "r-a": (600, 50, ["--layer-map", "6,6,6"]),
    "r-c": (600, 50, ["--layer-map", "6,6,6", "--corpus", MIX]),
    "r-b": (600, 50, ["--layer-map", "6,6,6", "--learning-rate", "1e-3"]),
    "r-d": (600, 50, ["--layer-map", "6,6,6", "--embedding-init", "model2vec"]),
    "r-f": (600, 50, ["--layer-map", "6,6,6", "--no-pack", "--sentence-weight", "3"]),
    "r-e": (600, 50, ["--layer-map", "6,6,6,6,6,6", "--iterations", "6"]),
    "r-g": (600, 50, ["--layer-map", "6,6,6", "--corpus", "wiki-offline+wiki-offline+wiki-offline+{biomed}"]),
}
RUNS = {**PROBES, **CURVES, **RECIPES}


def plan(args) -> list[Job]:
    jobs = []
    for name, (steps, every, flags) in RUNS.items():
        flags = [f.format(biomed=args.biomed) for f in flags]
        jobs.append(Job(name, ["distill", "--max-steps", str(steps), "--zero-shot-every", str(every),
                               "--zero-shot-data", args.glue_dir, "--save-steps", "100000", "--out", name, "--resume", *flags],
                        f"{name}/final/distillation.json"))
    return jobs


def read_run(run: Path) -> tuple[dict, list[dict]]:
    """A distill run's final distillation.json and its zero-shot curve (step, tokens, Spearman) from log.jsonl."""
    info = read_json(run / "final" / "distillation.json")
    rows = read_jsonl(run / "log.jsonl")
    return info, [{k: r[k] for k in ("step", "tokens", "zero_shot_spearman")} for r in rows if "zero_shot_spearman" in r]


def collect_run(work: Path, name: str) -> dict:
    """A run's zero-shot curve, its flags and its distilled tokens."""
    info, curve = read_run(work / name)
    return {"name": name, "flags": RUNS[name][2], "steps": info["steps"], "distilled_tokens": info["distilled_tokens"],
            "seed": info["seed"], "curve": curve}


def run(args) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    def keep(job):
        write_json(RESULTS_DIR / f"{job.name}.json", collect_run(work, job.name))

    jobs = [j for j in plan(args) if not args.only or j.name in args.only]
    for job in jobs:
        if (work / job.done).exists():
            keep(job)
    return run_jobs(jobs, work, args.jobs, args.threads, on_done=keep)


def read(name: str) -> dict | None:
    f = RESULTS_DIR / f"{name}.json"
    return read_json(f) if f.exists() else None


def _points(run: dict) -> list[float]:
    return [r["zero_shot_spearman"] for r in run["curve"]]


def table() -> str:
    """Markdown: every probe's score at step 0 (the initialisation), its lowest, and at the end."""
    lines = ["| run | flags | step 0 | lowest (step) | last (step) |", "|---|---|---|---|---|"]
    for name in RUNS:
        run = read(name)
        if run is None:
            continue
        low = min(run["curve"], key=lambda r: r["zero_shot_spearman"])
        lines.append(f"| {name} | `{' '.join(run['flags']) or 'cpu-demo'}` | {run['curve'][0]['zero_shot_spearman']:.2f} | "
                     f"{low['zero_shot_spearman']:.2f} ({low['step']}) | {run['curve'][-1]['zero_shot_spearman']:.2f} "
                     f"({run['curve'][-1]['step']}) |")
    return "\n".join(lines)


def figure(args) -> int:
    """The before/after curves over the first 400 steps, both seeds, and the initialised score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.6, 4.0))
    start = None
    for name, style in (("curve-base-s42", "C0-"), ("curve-base-s43", "C0--"), ("curve-map666-s42", "C1-"),
                        ("curve-map666-s43", "C1--")):
        run = read(name)
        if run is None:
            continue
        start = run["curve"][0]["zero_shot_spearman"]
        label = ("layer map 2,4,6 (cpu-demo)" if "base" in name else "layer map 6,6,6") + f", seed {run['seed']}"
        ax.plot([r["step"] for r in run["curve"]], _points(run), style, marker=".", label=label)
    if start is not None:
        ax.axhline(start, color="grey", ls=":", label=f"initialised student {start:.1f}")
    save_figure(fig, ax, args.figure, "The start of distillation: does it keep the initialisation?",
                "distillation step (16 packed windows of 128 tokens)", "STS-B dev Spearman, zero-shot")
    return 0


# The embedding-init comparison: each init as the student starts (0 steps, the r-a probe's flags
# otherwise) and after its 600-step recipe probe
EMBEDDING_INITS = {"teacher": ("init-teacher", "r-a"), "model2vec": ("init-model2vec", "r-d")}


def embedding_init(args) -> int:
    """The embedding initialisations side by side (docs/results/distillation-start/embedding-init.json):
    `bench embed` of the student as initialised (0 steps; the SVD of the teacher's input embeddings
    against model2vec's PCA of its outputs) and after the 600-step probes r-a / r-d at equal tokens:
    the whole student's zero-shot STS-B and its embedding layer's alone."""
    from minialbert.inference.embeddings import bench_embed

    work = Path(args.work)
    missing = [probe for _, probe in EMBEDDING_INITS.values() if not (work / probe / "final" / "config.json").is_file()]
    if missing:
        raise SystemExit(f"embedding-init compares against the recipe probes {', '.join(missing)}, which are not in "
                         f"{work}: run `python -m scripts.studies distillation-start run --only r-a,r-d` first.")
    starts = {start: (init, 0) for init, (start, _) in EMBEDDING_INITS.items()}
    jobs = [Job(start, ["distill", *RECIPES["r-a"][2], "--embedding-init", init, "--max-steps", "0",
                        "--save-steps", "100000", "--out", start, "--resume"], f"{start}/final/config.json")
            for start, (init, _) in starts.items()]
    if run_jobs(jobs, work, 1, args.threads):
        return 1
    probes = {probe: (init, RECIPES[probe][0]) for init, (_, probe) in EMBEDDING_INITS.items()}
    rows = {}
    for name, (init, steps) in {**starts, **probes}.items():
        r = bench_embed(str(work / name / "final"), args.glue_dir)
        rows[name] = {"embedding_init": init, "steps": steps, "spearman": r["spearman"],
                      "embedding_layer_spearman": r["embedding_layer_spearman"]}
    write_json(RESULTS_DIR / "embedding-init.json", rows)
    print(json.dumps(rows, indent=2))
    return 0


RELEASE_CURVE = RESULTS / "retention" / "release-curve.json"


def release(args) -> int:
    """The release run's zero-shot curve and what it cost (docs/results/retention/release-curve.json)
    and its figure, against the initialised student and the model2vec baselines of the same run of
    `bench embed --compare` (docs/results/retention/embed.json)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(args.run)
    if (run / "final" / "distillation.json").is_file():
        info, curve = read_run(run)
        keep = {k: info.get(k) for k in ("steps", "distilled_tokens", "train_seconds_total", "machine", "seed")}
        write_json(RELEASE_CURVE, {**keep, "settings_sources": info.get("settings_sources"), "curve": curve})
    data = read_json(RELEASE_CURVE)
    fig, ax = plt.subplots(figsize=(6.6, 4.0))
    ax.plot([r["tokens"] / 1e6 for r in data["curve"]], [r["zero_shot_spearman"] for r in data["curve"]], "C1-",
            marker="o", label="released student (cpu-2h recipe)")
    embed = RESULTS / "retention" / "embed.json"
    if embed.is_file():
        for i, (name, r) in enumerate(read_json(embed).get("compare", {}).items()):
            ax.axhline(r["spearman"], color=f"C{i + 2}", ls="--", label=f"{name} {r['spearman']:.1f}")
    save_figure(fig, ax, args.figure, "The release run, scored every 250 steps", "distilled tokens (millions)",
                "STS-B dev Spearman, zero-shot")
    print(RELEASE_CURVE)
    return 0


def add_commands(sub, defaults) -> None:
    r = sub.add_parser("run", help="run (or continue) the probes, curves and recipe probes")
    defaults(r, work="runs/distillation-start")
    r.add_argument("--only", type=lambda s: s.split(","), default=None, help="comma-separated run names")
    r.add_argument("--jobs", type=int, default=1)
    r.add_argument("--threads", type=int, default=2)
    r.set_defaults(func=run)
    f = sub.add_parser("figure", help="the before/after figure from the committed curves")
    f.add_argument("--figure", default=str(FIGURES / "distillation-start.png"))
    f.set_defaults(func=figure)
    e = sub.add_parser("embedding-init", help="SVD against model2vec embedding init, at step 0 and after r-a / r-d")
    defaults(e, work="runs/distillation-start")
    e.add_argument("--threads", type=int, default=2)
    e.set_defaults(func=embedding_init)
    r = sub.add_parser("release", help="the release run's zero-shot curve (JSON) and its figure")
    r.add_argument("--run", default="runs/release", help="the release run's --out (skipped when absent)")
    r.add_argument("--figure", default=str(FIGURES / "release-curve.png"))
    r.set_defaults(func=release)
