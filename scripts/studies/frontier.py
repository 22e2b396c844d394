"""Recursive or plain, at my size? (docs/studies/frontier.md): students of every kind distilled
at equal tokens from the packaged MiniLM teacher with the `cpu-2h` recipe's corpus and losses
(600 steps, 1.23 M tokens, seed 42), each then scored zero-shot on STS-B (train pairs, to choose
on; dev, to report) and by two fine-tuned probes on the weak tasks (CoLA, NCBI-disease: one fixed
lr, 5e-4, for every point, batch 16, 3 epochs, seed 42, full training sets). One point's
distillation is repeated with seed 43 for the spread. The pick reads zero-shot STS-B train and the
NCBI-disease probe, never CoLA (at a fixed rate CoLA sits at its floor: 6 of the first 16 points
score exactly 0.00, so it separates nothing), and applies the noise rule: a point within twice the
seed spread of the best is no worse than it, and the smallest such point is picked. Speed: one `bench embed --compare` over every point and the teacher, run after the
grid with nothing else running (`speed`).

    python -m scripts.studies frontier run [--only NAME,...] [--parallel 2 --threads 1]
    python -m scripts.studies frontier speed        # sentences/s of every point and the teacher
    python -m scripts.studies frontier summary      # frontier.json, the figure, the README table

Each point's result file (docs/results/frontier/points/NAME.json) is written as its last job
ends, and its run records beside it (points/NAME/: distillation.json, the embed results, each
probe's results.json and run records, copied atomically and verified); `run` skips finished jobs, so
an interrupted grid resumes job by job."""

from __future__ import annotations

from pathlib import Path

from minialbert.finetune import statistics as st
from minialbert.records import read_json, write_json

from .common import FIGURES, RESULTS, copy_results, protocol_argv, save_figure, time_students
from .jobs import Job, run_jobs

RESULTS_DIR = RESULTS / "frontier"
STEPS = 600  # x 16 windows x 128 tokens, packed: 1.23 M tokens, the r-a probe's budget
# The probes: the one study protocol (3 epochs, batch 16, seed 42, cross-encoder) at one fixed rate
# for every point (the top of the student's grid; not tuned per point or per task).
PROBE_LR = ("5e-4",)
PROBES = ("cola", "ner:NCBI-disease")
# What the pick reads besides zero-shot STS-B train: CoLA is reported but not read (see above).
PICK_PROBES = ("ner:NCBI-disease",)
RELAXED = ["--layer-map", "2,4,6", "--shared-layer-init", "average"]  # deltas differ only between distinct layers

# name -> (kind, relaxation, distill flags on top of `--recipe cpu-2h`). Recursive points start as
# the released recipe does (shared layer = teacher layer 6, map 6,6,6); relaxed points and their
# rank-0 control map iterations to distinct layers 2,4,6 (1..6 for N = 6) with the shared layer the
# mean of those; plain points copy their k layers from the uniform map (k = 1: 6; 2: 3,6; 3: 2,4,6).
POINTS: dict[str, tuple[str, str, list[str]]] = {
    "rec-n3-e128": ("recursive", "none", []),
    "rec-n3-e128-s43": ("recursive", "none", ["--seed", "43"]),
    "rec-n3-e256": ("recursive", "none", ["--embedding-size", "256"]),
    "rec-n6-e128": ("recursive", "none", ["--iterations", "6", "--layer-map", "6,6,6,6,6,6"]),
    "rec-n3-e128-adapters4": ("recursive", "bigger adapters (H/4)", ["--adapter-reduction-factor", "4"]),
    "rec-n3-e128-map246": ("recursive", "none (map 2,4,6, mean init)", RELAXED),
    "rel-n3-e128-r32": ("recursive", "low-rank r=32", [*RELAXED, "--relaxation-rank", "32"]),
    "rel-n3-e128-r128": ("recursive", "low-rank r=128", [*RELAXED, "--relaxation-rank", "128"]),
    "rel-n3-e256-r32": ("recursive", "low-rank r=32", [*RELAXED, "--relaxation-rank", "32", "--embedding-size", "256"]),
    "rel-n6-e128-r32": ("recursive", "low-rank r=32", ["--iterations", "6", "--layer-map", "1,2,3,4,5,6",
                                                      "--shared-layer-init", "average", "--relaxation-rank", "32"]),
    # Relaxed recursion on the released map (6,6,6, shared layer 6: the recipe's own start, where the
    # deltas start as LoRA does), with the strict point run again beside them: the three run in one
    # invocation, on one machine in one dtype (RELEASED_MAP_GROUP), so they compare with each other.
    "rec-n3-e128-rerun": ("recursive", "none", []),
    "rel-n3-e128-r32-map666": ("recursive", "low-rank r=32 (map 6,6,6)", ["--relaxation-rank", "32"]),
    "rel-n3-e128-r128-map666": ("recursive", "low-rank r=128 (map 6,6,6)", ["--relaxation-rank", "128"]),
    "plain-1-e128": ("plain", "none", ["--iterations", "1", "--layer-groups", "1", "--no-adapters", "--layer-map", "6"]),
    "plain-2-e128": ("plain", "none", ["--iterations", "2", "--layer-groups", "2", "--no-adapters",
                                       "--layer-map", "3,6"]),
    "plain-3-e128": ("plain", "none", ["--iterations", "3", "--layer-groups", "3", "--no-adapters",
                                       "--layer-map", "2,4,6"]),
    "plain-1-e256": ("plain", "none", ["--iterations", "1", "--layer-groups", "1", "--no-adapters", "--layer-map", "6",
                                       "--embedding-size", "256"]),
    "plain-2-e256": ("plain", "none", ["--iterations", "2", "--layer-groups", "2", "--no-adapters",
                                       "--layer-map", "3,6", "--embedding-size", "256"]),
    "plain-3-e256": ("plain", "none", ["--iterations", "3", "--layer-groups", "3", "--no-adapters",
                                       "--layer-map", "2,4,6", "--embedding-size", "256"]),
}
SPREAD_PAIR = ("rec-n3-e128", "rec-n3-e128-s43")
RELEASED_MAP_GROUP = ("rec-n3-e128-rerun", "rel-n3-e128-r32-map666", "rel-n3-e128-r128-map666")
GROUP_DTYPE = "bf16"  # the dtype every committed point of the grid ran in (a lent H200)


WHOLE_FILE = "1000000"  # documents per source: more than the biomedical file holds


def distill_argv(name: str, biomed: str, steps: int = STEPS, dtype: str | None = None) -> list[str]:
    # --max-docs: the whole biomedical file, as every committed point read it (cpu-2h now caps each source of
    # its hub mix at 20,000 documents, which would cut the file to a fifth and change the mix)
    argv = ["distill", "--recipe", "cpu-2h", "--corpus", f"wiki-offline+{biomed}", "--max-docs", WHOLE_FILE,
            "--max-steps", str(steps), "--save-steps", "0.5", "--out", f"{name}/student", "--resume", *POINTS[name][2]]
    return argv + (["--dtype", dtype] if dtype else [])


def with_group(names: list[str]) -> list[str]:
    """The points to run: asking for one point of RELEASED_MAP_GROUP runs the whole group, so the
    strict rerun and the relaxed points share a machine and a dtype."""
    if set(names) & set(RELEASED_MAP_GROUP):
        names = [*names, *(n for n in RELEASED_MAP_GROUP if n not in names)]
    return names


def point_dtype(args, name: str) -> str | None:
    """The group's points run in one pinned dtype (`--dtype`, default the grid's bf16); the others as
    the recipe says (auto), as they ran."""
    return (getattr(args, "dtype", None) or GROUP_DTYPE) if name in RELEASED_MAP_GROUP else getattr(args, "dtype", None)


def plan(args, names) -> list[Job]:
    jobs = []
    for name in with_group(list(names)):
        model = f"{name}/student/final"
        jobs.append(Job(f"{name}/distill", distill_argv(name, args.biomed, args.steps, point_dtype(args, name)),
                        f"{name}/student/final/distillation.json"))
        for split in ("dev", "train"):
            jobs.append(Job(f"{name}/embed-{split}", ["bench", "embed", "--model", model, "--data-dir", args.glue_dir,
                                                      "--split", split, "--device", "auto", "--out", f"{name}/embed-{split}.json"],
                            f"{name}/embed-{split}.json", [f"{name}/distill"]))
        for task in PROBES:
            folder = f"{name}/{task.replace(':', '-')}"
            subset = ["--max-train-samples", str(args.probe_samples)] if args.probe_samples else []
            jobs.append(Job(folder, protocol_argv(args, model, task, folder, subset, lrs=PROBE_LR),
                            f"{folder}/results.json", [f"{name}/distill"]))
    return jobs


def point_files(work: Path, name: str) -> list[Path]:
    """The files a point's jobs write that its row is made from."""
    folder = work / name
    return [folder / "student/final/distillation.json", folder / "embed-dev.json", folder / "embed-train.json",
            *[folder / t.replace(":", "-") / "results.json" for t in PROBES]]


def point_records(work: Path, name: str) -> list[Path]:
    """What is committed beside a point's row: its files and every probe's run records."""
    return [*point_files(work, name),
            *(f for t in PROBES for f in sorted((work / name / t.replace(":", "-")).glob("runs/*.json")))]


def point_result(work: Path, name: str) -> dict | None:
    """One point's row, from the files its jobs wrote (None until every job has finished)."""
    from minialbert.finetune.report import task_score

    files = point_files(work, name)
    if not all(f.exists() for f in files):
        return None
    info = read_json(files[0])
    shape = info["student"]
    kind, relaxation, flags = POINTS[name]
    dev, train = (read_json(f) for f in files[1:3])
    probes = {t: round(task_score(read_json(f))[0], 2) for t, f in zip(PROBES, files[3:])}
    return {"name": name, "kind": kind, "parameters": shape["base_parameters"],
            "fp16_megabytes": shape["fp16_megabytes"], "iterations": shape["iterations"],
            "layer_groups": shape["layer_groups"], "embedding_size": shape["embedding_size"],
            "relaxation": relaxation, "relaxation_rank": shape["relaxation_rank"],
            "adapters": shape["adapters"], "adapter_reduction_factor": shape["adapter_reduction_factor"],
            "layer_map": info["layer_map"], "initialisation": info["initialisation"], "seed": info["seed"],
            "tokens": info["distilled_tokens"], "steps": info["steps"], "dtype": info["dtype"],
            "machine": info["machine"], "train_seconds": info["train_seconds_total"],
            "zero_shot": dev["spearman"], "zero_shot_train": train["spearman"], "probes": probes,
            "flags": flags}


def run(args) -> int:
    names = with_group(args.only or list(POINTS))
    unknown = sorted(set(names) - set(POINTS))
    if unknown:
        raise SystemExit(f"unknown points {unknown}; points: {', '.join(POINTS)}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.results) / "points"

    def on_done(job):  # a point's file appears as its last job ends, its run records beside it
        name = job.name.split("/")[0]
        row = point_result(work, name)
        if row is not None:
            copy_results(work, out, point_records(work, name))
            write_json(out / f"{name}.json", row)
            print(f"point {name}: zero-shot train {row['zero_shot_train']}, dev {row['zero_shot']}, "
                  f"probes {row['probes']}", flush=True)

    for name in names:  # points finished by an earlier invocation
        if point_result(work, name) is not None and not (out / f"{name}.json").exists():
            on_done(Job(f"{name}/distill", [], ""))
    return run_jobs(plan(args, names), work, args.parallel, args.threads, on_done=on_done)


def speed(args) -> int:
    """Sentences/s of every point and the teacher in ONE `bench embed --compare` run (nothing else
    may run meanwhile); a point whose trained folder is not on this machine (a grid run elsewhere)
    is timed as its step-0 student of the same shape (`common.time_students`)."""
    work = Path(args.work).resolve()  # the jobs run inside it: every path they get is absolute
    points = {name: (work / name / "student" / "final", distill_argv(name, args.biomed, 0)) for name in POINTS}
    timed = time_students(work, points, "minilm", args.glue_dir, args.threads)
    if timed is None:
        return 1
    speeds = {"bench": "bench embed --compare over every point and the teacher (STS-B dev sentences)",
              "threads": timed["threads"], "machine": _machine(), "teacher": timed["teacher"],
              "points": timed["points"], "timed_at_step_0": timed["timed_at_step_0"]}
    write_json(Path(args.results) / "speed.json", speeds)
    print(speeds)
    return 0


def _machine() -> dict:
    from minialbert.runtime import machine_description

    return machine_description()


def load_points(results: Path) -> list[dict]:
    return [read_json(p) for p in sorted((results / "points").glob("*.json"))]


def summary(args) -> int:
    """frontier.json (every point, its speed, the teacher), the figure and the generated table."""
    results = Path(args.results)
    points = load_points(results)
    if not points:
        raise SystemExit(f"no points in {results / 'points'}: run `python -m scripts.studies frontier run` first")
    speeds = read_json(results / "speed.json") if (results / "speed.json").exists() else {}
    teacher = read_json(RESULTS / "retention" / "embed.json")
    for p in points:
        p["sentences_per_s"] = speeds.get("points", {}).get(p["name"])
    spread = seed_spread(points)
    shapes: dict = {}
    for p in points:  # points of one shape run the same computation: their speeds differ by noise only
        if p["sentences_per_s"] is not None:  # an untimed point (run elsewhere later) leaves its shape's others
            shapes.setdefault(p["parameters"], []).append(p["sentences_per_s"])
    same = [sorted(v) for v in shapes.values() if len(v) > 1]
    if same:
        speeds["noise"] = {"same_shape_sentences_per_s": same, "largest_ratio": round(max(v[-1] / v[0] for v in same), 2)}
    doc = {"study": "frontier", "teacher": {"name": "minilm", "parameters": teacher["compare"]["minilm"]["parameters"],
                                            "zero_shot": teacher["compare"]["minilm"]["spearman"],
                                            "sentences_per_s": speeds.get("teacher")},
           "protocol": {"steps": STEPS, "recipe": "cpu-2h (corpus wiki-offline + biomedical sentences, its losses)",
                        "probe": f"finetune --lr {PROBE_LR[0]}, 3 epochs, batch 16, seed 42, full training sets",
                        "probe_tasks": list(PROBES),
                        "pick": PICK_CRITERION + "; dev and CoLA are reported only"},
           "seed_spread": spread, "speed": {k: v for k, v in speeds.items() if k != "points"},
           "run": args.run_note, "points": points}
    doc["pick"] = {"30": pick(doc, 30), "50": pick(doc, 50)}
    doc["released_map_group"] = same_conditions(points, RELEASED_MAP_GROUP)
    write_json(results / "frontier.json", doc)
    figure(doc, Path(args.figure))
    print(table(doc))
    return 0


def seed_spread(points: list[dict]) -> dict:
    """The difference between the two seeds of the repeated point, per measure: a difference between
    points under twice this is reported as none."""
    by_name = {p["name"]: p for p in points}
    a, b = (by_name.get(n) for n in SPREAD_PAIR)
    if not (a and b):
        return {}
    measures = {"zero_shot": (a["zero_shot"], b["zero_shot"]), "zero_shot_train": (a["zero_shot_train"], b["zero_shot_train"]),
                **{f"probe:{t}": (a["probes"][t], b["probes"][t]) for t in PROBES}}
    return {"points": list(SPREAD_PAIR), **{k: round(st.seed_range([x, y]), 2) for k, (x, y) in measures.items()}}


def same_conditions(points: list[dict], names) -> dict:
    """Whether the points of a group that must compare ran on one machine in one dtype (those in)."""
    group = [p for p in points if p["name"] in names]
    machines = {str(p["machine"]) for p in group}
    dtypes = {p["dtype"] for p in group}
    return {"points": [p["name"] for p in group], "pending": [n for n in names if n not in {p["name"] for p in group}],
            "same_machine_and_dtype": len(machines) <= 1 and len(dtypes) <= 1, "dtypes": sorted(dtypes)}


def figure(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    teacher = doc["teacher"]
    styles = {"recursive": ("o", "tab:blue"), "plain": ("s", "tab:orange")}
    for ax, measure, label in ((axes[0], "zero_shot", "zero-shot STS-B dev (Spearman x 100)"),
                               (axes[1], "probe_mean", "probe mean: CoLA MCC, NCBI-disease F1 (x 100)")):
        for kind, (marker, colour) in styles.items():
            for group in (False, True):  # the released-map group ran later on the CPU: hollow, untimed
                pts = [p for p in doc["points"] if p["kind"] == kind and not p["name"].endswith("-s43")
                       and (p["name"] in RELEASED_MAP_GROUP) == group]
                if not pts:
                    continue
                xs = [100 * p["parameters"] / teacher["parameters"] for p in pts]
                ys = [st.mean(p["probes"].values()) if measure == "probe_mean" else p[measure] for p in pts]
                if group:
                    ax.scatter(xs, ys, s=60, marker=marker, facecolors="none", edgecolors=colour,
                               label=f"{kind}, released map 6,6,6 (CPU run, not timed)")
                else:
                    sizes = [20 + (p["sentences_per_s"] or 0) / 5 for p in pts]
                    ax.scatter(xs, ys, s=sizes, marker=marker, color=colour, alpha=0.7, label=f"{kind} (area ~ speed)")
                for p, x, y in zip(pts, xs, ys):
                    ax.annotate(p["name"], (x, y), fontsize=6, xytext=(3, -9 if group else 3), textcoords="offset points")
        if measure == "zero_shot":
            ax.axhline(teacher["zero_shot"], color="grey", ls="--", lw=1, label=f"teacher {teacher['zero_shot']}")
        ax.axvline(30, color="grey", ls=":", lw=1)
        save_figure(fig, ax, path, "", "parameters (% of the teacher's)", label)
    fig.suptitle(f"Students at equal tokens ({doc['protocol']['steps']} steps of cpu-2h); dotted: 30% of the teacher")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(doc: dict) -> str:
    """The README's table: every point by size, then at each size band who wins and by how much."""
    spread = doc.get("seed_spread", {})
    lines = ["| point | kind | relaxation | params (% teacher) | fp16 MB | sentences/s | zero-shot train | "
             "zero-shot dev | CoLA | NCBI-disease |", "|" + "---|" * 10]
    T = doc["teacher"]["parameters"]
    for p in sorted(doc["points"], key=lambda p: p["parameters"]):
        where = " (CPU run)" if p["name"] in RELEASED_MAP_GROUP else ""
        lines.append(f"| {p['name']} | {p['kind']}{where} | {p['relaxation']} | {p['parameters'] / 1e6:.1f}M "
                     f"({100 * p['parameters'] / T:.0f}%) | {p['fp16_megabytes']:.1f} | "
                     f"{p['sentences_per_s'] or '–'} | {p['zero_shot_train']:.2f} | {p['zero_shot']:.2f} | "
                     f"{p['probes']['cola']:.2f} | {p['probes']['ner:NCBI-disease']:.2f} |")
    lines += ["", verdicts(doc, spread)]
    return "\n".join(lines)


MEASURES = {"zero-shot train": lambda p: p["zero_shot_train"], "zero-shot dev": lambda p: p["zero_shot"],
            "CoLA": lambda p: p["probes"]["cola"], "NCBI-disease": lambda p: p["probes"]["ner:NCBI-disease"]}
NOISE = {"zero-shot train": "zero_shot_train", "zero-shot dev": "zero_shot", "CoLA": "probe:cola",
         "NCBI-disease": "probe:ner:NCBI-disease"}


def verdicts(doc: dict, spread: dict) -> str:
    """At equal parameters (within 15%): each plain point against the best recursive point of its
    size (by zero-shot train, the pick's measure), per measure the difference, called a win only
    beyond twice the seed spread of the repeated point."""
    T = doc["teacher"]["parameters"]
    points = main_grid(doc["points"])
    lines = ["| size (plain point) | best recursive of that size | " + " | ".join(MEASURES) + " |",
             "|" + "---|" * (2 + len(MEASURES))]
    for plain in sorted((p for p in points if p["kind"] == "plain"), key=lambda p: p["parameters"]):
        peers = [p for p in points if p["kind"] == "recursive" and abs(p["parameters"] / plain["parameters"] - 1) <= 0.15]
        if not peers:
            continue
        rec = max(peers, key=MEASURES["zero-shot train"])
        cells = []
        for name, measure in MEASURES.items():
            gap = measure(rec) - measure(plain)
            side = st.ahead(gap, spread.get(NOISE[name]), "recursive", "plain")
            cells.append(side if side == "no difference" else f"{side} +{abs(gap):.2f}")
        lines.append(f"| {100 * plain['parameters'] / T:.0f}% ({plain['name']}) | {rec['name']} "
                     f"({100 * rec['parameters'] / T:.0f}%) | " + " | ".join(cells) + " |")
    noise = ", ".join(f"{k} {v}" for k, v in spread.items() if k != "points")
    lines.append(f"\nA difference within twice the seed spread (seeds 42 and 43 of {' / '.join(spread.get('points', []))}: "
                 f"{noise}) is reported as no difference. The points of the released map 6,6,6 group "
                 f"({', '.join(RELEASED_MAP_GROUP)}) ran on another machine: they are compared among themselves only.")
    return "\n".join(lines)


def main_grid(points: list[dict]) -> list[dict]:
    """The points that compare with each other across kinds: one seed each, all run together (the
    released-map group ran later on another machine; it compares within itself, `group_verdict`)."""
    return [p for p in points if not p["name"].endswith("-s43") and p["name"] not in RELEASED_MAP_GROUP]


def group_verdict(doc: dict, spread: dict) -> list[str]:
    """Each relaxed point of the released-map group against the strict rerun beside it, per measure,
    with the noise rule."""
    by_name = {p["name"]: p for p in doc["points"]}
    strict = by_name[RELEASED_MAP_GROUP[0]]
    lines = []
    for name in RELEASED_MAP_GROUP[1:]:
        cells = []
        for label, measure in MEASURES.items():
            gap = measure(by_name[name]) - measure(strict)
            cells.append(f"{label} {gap:+.2f} ({st.ahead(gap, spread.get(NOISE[label]), 'relaxed', 'strict')})")
        lines.append(f"{name} ({by_name[name]['parameters'] / 1e6:.1f}M) against {strict['name']} "
                     f"({strict['parameters'] / 1e6:.1f}M): " + ", ".join(cells))
    return lines


PICK_CRITERION = "mean of zero-shot STS-B train and the NCBI-disease probe"


def pick_score(point: dict) -> float:
    """What the pick ranks by: zero-shot STS-B train and the probes of PICK_PROBES (never CoLA, never dev)."""
    return st.mean([point["zero_shot_train"], *(point["probes"][t] for t in PICK_PROBES)])


def pick(doc: dict, band: float = 30) -> dict:
    """The release pick inside `band` % of the teacher's parameters, with the noise rule: the points
    whose pick score is within twice the seed spread of the best one's (that spread measured on the
    pick score of the repeated point) are no worse than it, and the smallest of them is picked."""
    T = doc["teacher"]["parameters"]
    inside = [p for p in main_grid(doc["points"]) if 100 * p["parameters"] / T <= band]
    ranked = sorted(inside, key=pick_score, reverse=True)
    by_name = {p["name"]: p for p in doc["points"]}
    pair = [by_name[n] for n in SPREAD_PAIR if n in by_name]
    spread = round(st.seed_range(pick_score(p) for p in pair), 2) if len(pair) == 2 else None
    if not ranked:
        return {"band_percent": band, "criterion": PICK_CRITERION, "seed_spread": spread, "ranking": [],
                "within_noise_of_the_best": [], "pick": None}
    best = pick_score(ranked[0])
    tied = [p for p in ranked if st.within_noise(best - pick_score(p), spread)]
    chosen = min(tied, key=lambda p: (p["parameters"], -pick_score(p)))
    return {"band_percent": band, "criterion": PICK_CRITERION, "seed_spread": spread,
            "ranking": [{"name": p["name"], "score": round(pick_score(p), 2)} for p in ranked],
            "within_noise_of_the_best": [p["name"] for p in tied], "pick": chosen["name"]}


def committed() -> dict:
    return read_json(RESULTS_DIR / "frontier.json")


def committed_table() -> str:
    """The frontier page's table, from the committed frontier.json."""
    return table(committed())


def committed_pick() -> str:
    """The pick per size band, computed here from the committed points (so the text follows the rule)."""
    doc = committed()
    lines = []
    for band in (30, 50):
        result = pick(doc, band)
        ranking = ", ".join(f"{r['name']} {r['score']:.2f}" for r in result["ranking"])
        ties = [n for n in result["within_noise_of_the_best"] if n != result["ranking"][0]["name"]]
        lines.append(f"   - <= {band}% of the teacher ({result['criterion']}; seed spread {result['seed_spread']}): "
                     f"**{result['pick']}**" + (f" (within the noise of the best: {', '.join(ties)})" if ties else "")
                     + f"; ranking: {ranking}")
    group = same_conditions(doc["points"], RELEASED_MAP_GROUP)
    if group["pending"]:
        lines.append(f"   - relaxed recursion on the released map 6,6,6 beside the strict rerun: pending "
                     f"({', '.join(group['pending'])}; `frontier run --only {','.join(RELEASED_MAP_GROUP)}`)")
    elif not group["same_machine_and_dtype"]:
        lines.append("   - relaxed recursion on the released map 6,6,6: **not comparable**, its points ran on "
                     "different machines or dtypes")
    else:
        lines.append(f"   - relaxed recursion on the released map 6,6,6, beside the strict rerun (one machine, "
                     f"{group['dtypes'][0]}; same noise rule):")
        lines += [f"     - {line}" for line in group_verdict(doc, doc.get("seed_spread", {}))]
    return "\n".join(lines)


def add_commands(sub, defaults) -> None:
    r = sub.add_parser("run", help="distil, score and probe every point (or --only some); resumable job by job")
    defaults(r, work="runs/frontier")
    r.add_argument("--only", type=lambda s: s.split(","), default=None, help="comma-separated point names")
    r.add_argument("--parallel", type=int, default=2, help="jobs at a time (2 cores: 2 jobs of one thread)")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--steps", type=int, default=STEPS, help="distillation steps per point (the study: 600)")
    r.add_argument("--probe-samples", type=int, default=None, help="probe on a subset (tests only)")
    r.add_argument("--dtype", choices=["fp32", "bf16"], default=None,
                   help=f"distil in this dtype (default: the recipe's auto; the points on the released map run "
                        f"together in {GROUP_DTYPE}, the grid's dtype, unless this says otherwise)")
    r.add_argument("--results", default=str(RESULTS_DIR))
    r.set_defaults(func=run)
    s = sub.add_parser("speed", help="sentences/s of every point and the teacher in one bench embed --compare run")
    defaults(s, work="runs/frontier")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--results", default=str(RESULTS_DIR))
    s.set_defaults(func=speed)
    m = sub.add_parser("summary", help="frontier.json, the figure and the table from the committed point files")
    m.add_argument("--results", default=str(RESULTS_DIR))
    m.add_argument("--figure", default=str(FIGURES / "frontier.png"))
    m.add_argument("--run-note", default="", help="where and how the grid ran (device, precision), for frontier.json")
    m.set_defaults(func=summary)
