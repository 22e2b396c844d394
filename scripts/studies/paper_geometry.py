"""The paper's geometry on a real 12-layer, 768-wide teacher (docs/results/paper-geometry): the
`paper-mpnet-128` recipe's students distilled from `mpnet` (all-mpnet-base-v2), in three stages,
each resumable job by job and committed as it ends:

1. step0: the zero-shot STS-B dev score of each initialisation before any training (E 128 / 312 /
   768 by SVD and model2vec; the shared layer from the last, the middle and the mean of the
   teacher's layers; relaxed deltas at two ranks on the uniform map; plain students of 1, 2 and 3
   teacher layers). Nothing is chosen on it: at step 0 every layer map is the same student.
2. probe: the recursive E 128 student over the grid's own length (0.5 M tokens), one run per map,
   shared layer, learning rate and warm-up candidate, scored every PROBE_EVERY steps on an evenly
   spaced subset of the STS-B *train* pairs; the pick is the best last score on those pairs.
3. grid: at equal tokens with the probe's pick: the recursive student at E 128 (the picked probe run
   itself, and a second seed) and E 312, relaxed recursion, plain students of 1 layer (E 128, about
   the same size) and 2 layers; each scored on the train subset (the pick's measure) and on dev
   (reported once).

One dtype (DTYPE) for every run, whatever the CPU: numbers across sessions and machines stay
comparable.

    python -m scripts.studies paper-geometry run [--stage step0|probe|grid] [--parallel 2 --threads 1]
    python -m scripts.studies paper-geometry summary     # step0.json, probe.json, frontier.json
"""

from __future__ import annotations

from pathlib import Path

from minialbert.errors import MiniAlbertError
from minialbert.fingerprint import cache_root
from minialbert.finetune import statistics as st
from minialbert.records import read_json, read_jsonl, write_json

from .common import FIGURES, RESULTS, save_figure, time_students
from .jobs import Job, run_jobs

RESULTS_DIR = RESULTS / "paper-geometry"
FIGURE = FIGURES / "paper-geometry-curves.png"
PAGE = RESULTS.parent / "studies" / "paper-geometry.md"
# Outside the clone: the work tree is laid anew each session, the students and logs must outlive it.
WORK = str(cache_root() / "studies" / "paper-geometry")
RECIPE = "paper-mpnet-128"
TEACHER = "mpnet"
DTYPE = "bf16"  # pinned for the whole grid
STEPS = 244  # x 16 packed windows x 128 tokens: 0.5 M distilled tokens per point
PROBE_EVERY = 61
TRAIN_PAIRS = 1000  # the evenly spaced STS-B train pairs every pick reads
LAST, MIDDLE, L = 12, 6, 12
ALL_LAST = ",".join([str(LAST)] * L)
UNIFORM = ",".join(str(i) for i in range(1, L + 1))

# name -> (what it is, distill flags on top of the recipe), each at 0 steps
STEP0 = {
    "rec-e128-svd": ("recursive, E 128 (SVD), shared layer 12", []),
    "rec-e312-svd": ("recursive, E 312 (SVD), shared layer 12", ["--embedding-size", "312"]),
    "rec-e768-copy": ("recursive, E 768 (the teacher's table), shared layer 12", ["--embedding-size", "768"]),
    # Each adapter ends in a LayerNorm of its own (unit scale at the start): the two rows below show
    # what the adapters' start costs, against the rows above.
    "rec-e128-no-adapters": ("recursive, E 128 (SVD), shared layer 12, no adapters", ["--no-adapters"]),
    "rec-e768-no-adapters": ("recursive, E 768 (the teacher's table), shared layer 12, no adapters",
                             ["--embedding-size", "768", "--no-adapters"]),
    "rec-e128-model2vec": ("recursive, E 128 (model2vec), shared layer 12", ["--embedding-init", "model2vec"]),
    "rec-e128-middle": ("recursive, E 128, shared layer 6", ["--shared-layer-init", str(MIDDLE)]),
    "rec-e128-mean": ("recursive, E 128, shared layer = mean of the 12", ["--shared-layer-init", "average",
                                                                          "--layer-map", UNIFORM]),
    "rel-e128-r32-uniform": ("relaxed r 32, map 1..12, shared layer 12", ["--relaxation-rank", "32",
                                                                           "--layer-map", UNIFORM]),
    "rel-e128-r128-uniform": ("relaxed r 128, map 1..12, shared layer 12", ["--relaxation-rank", "128",
                                                                             "--layer-map", UNIFORM]),
    "plain-1-e128": ("plain, layer 12, E 128", ["--iterations", "1", "--layer-groups", "1", "--no-adapters",
                                                "--layer-map", "12"]),
    "plain-2-e128": ("plain, layers 6,12, E 128", ["--iterations", "2", "--layer-groups", "2", "--no-adapters",
                                                   "--layer-map", "6,12"]),
    "plain-3-e128": ("plain, layers 4,8,12, E 128", ["--iterations", "3", "--layer-groups", "3", "--no-adapters",
                                                     "--layer-map", "4,8,12"]),
}

# The probe: the recursive E 128 student, one candidate each (map, shared layer, rate, warm-up).
PROBES = {
    "probe-last-lr1e-4": ("map all-to-last, shared 12, lr 1e-4, warm-up 100", []),
    "probe-uniform-lr1e-4": ("map 1..12, shared 12, lr 1e-4, warm-up 100", ["--layer-map", UNIFORM]),
    "probe-mean-uniform-lr1e-4": ("map 1..12, shared = mean, lr 1e-4, warm-up 100",
                                  ["--layer-map", UNIFORM, "--shared-layer-init", "average"]),
    "probe-last-lr3e-5": ("map all-to-last, shared 12, lr 3e-5, warm-up 100", ["--learning-rate", "3e-5"]),
    "probe-last-lr1e-4-warm25": ("map all-to-last, shared 12, lr 1e-4, warm-up 25", ["--warmup-steps", "25"]),
}
# The probe's choices that a grid point inherits (the flags above minus nothing: each probe is one
# complete setting of map, shared layer, rate and warm-up).

# name -> (kind, relaxation, flags on top of the recipe and the pick's flags)
GRID = {
    "rec-e128-s43": ("recursive", "none", ["--seed", "43"]),
    "rec-e312": ("recursive", "none", ["--embedding-size", "312"]),
    "rel-e128-r32": ("recursive", "low-rank r=32", ["--relaxation-rank", "32"]),
    "plain-1-e128": ("plain", "none", ["--iterations", "1", "--layer-groups", "1", "--no-adapters", "--layer-map", "12"]),
    "plain-2-e128": ("plain", "none", ["--iterations", "2", "--layer-groups", "2", "--no-adapters",
                                       "--layer-map", "6,12"]),
}
SPREAD_PAIR = ("rec-e128", "rec-e128-s43")


def distill_argv(out: str, flags: list[str], steps: int, zero_shot: list[str]) -> list[str]:
    return ["distill", "--recipe", RECIPE, "--teacher", TEACHER, "--dtype", DTYPE, "--max-steps", str(steps),
            "--out", out, "--resume", *zero_shot, *flags]


def _curve_flags(args) -> list[str]:
    return ["--zero-shot-every", str(PROBE_EVERY), "--zero-shot-data", args.glue_dir, "--zero-shot-split", "train",
            "--zero-shot-pairs", str(TRAIN_PAIRS)]


def _embed(name: str, model: str, args, split: str = "dev") -> Job:
    extra = ["--max-pairs", str(TRAIN_PAIRS)] if split == "train" else []
    return Job(f"{name}/embed-{split}", ["bench", "embed", "--model", model, "--data-dir", args.glue_dir,
                                         "--split", split, *extra, "--out", f"{name}/embed-{split}.json"],
               f"{name}/embed-{split}.json", [f"{name}/distill"])


def plan_step0(args) -> list[Job]:
    jobs = []
    for name, (_, flags) in STEP0.items():
        out = f"step0/{name}"
        jobs.append(Job(f"{out}/distill", distill_argv(f"{out}/student", flags, 0, []),
                        f"{out}/student/final/distillation.json"))
        jobs.append(_embed(out, f"{out}/student/final", args))
    jobs.append(Job("step0/teacher/embed-dev", ["bench", "embed", "--model", TEACHER, "--data-dir", args.glue_dir,
                                                "--out", "step0/teacher/embed-dev.json"], "step0/teacher/embed-dev.json"))
    return jobs


def plan_probe(args) -> list[Job]:
    return [Job(f"{name}/distill", distill_argv(f"{name}/student", flags, args.steps, _curve_flags(args)),
                f"{name}/student/final/distillation.json") for name, (_, flags) in PROBES.items()]


def probe_curve(work: Path, name: str) -> list[dict]:
    """The run's zero-shot scores by step. A run resumed from a checkpoint logs again the steps after
    it (step 0 included when it was cut before its first checkpoint): the last entry of a step is
    the one of the run that went on."""
    by_step = {r["step"]: {k: r[k] for k in ("step", "tokens", "zero_shot_spearman")}
               for r in read_jsonl(work / name / "student" / "log.jsonl") if "zero_shot_spearman" in r}
    return [by_step[step] for step in sorted(by_step)]


def probe_pick(probe: dict) -> dict:
    """The probe whose last score on the train subset is highest (dev is never read here)."""
    finished = {n: r for n, r in probe["runs"].items() if r["curve"]}
    if len(finished) < len(PROBES):
        raise MiniAlbertError(f"the probe has {len(finished)} of {len(PROBES)} runs finished; the grid waits for "
                              "all of them: run `python -m scripts.studies paper-geometry run --stage probe`.")
    best = max(finished, key=lambda n: finished[n]["curve"][-1]["zero_shot_spearman"])
    return {"name": best, "flags": PROBES[best][1], "criterion": f"last zero-shot score on {TRAIN_PAIRS} STS-B "
                                                                  "train pairs"}


def grid_flags(pick: dict) -> dict[str, list[str]]:
    """Each grid point's distill flags on top of the recipe: the pick's, then the point's own (a plain
    student's own layer map replaces the pick's: its layers are copied from that map)."""
    flags = {"rec-e128": list(pick["flags"])}
    for name, (_, _, own) in GRID.items():
        base = list(pick["flags"]) if "--layer-groups" not in own else _without_map(pick["flags"])
        flags[name] = [*base, *own]
    return flags


def point_folder(name: str, pick: dict) -> str:
    """A grid point's folder in the work folder: rec-e128 is the picked probe run itself."""
    return pick["name"] if name == "rec-e128" else name


def plan_grid(args, pick: dict) -> list[Job]:
    jobs = [_embed(pick["name"], f"{pick['name']}/student/final", args)]
    jobs[0].after = []
    for name, flags in grid_flags(pick).items():
        if name == "rec-e128":
            continue
        jobs.append(Job(f"{name}/distill", distill_argv(f"{name}/student", flags, args.steps, _curve_flags(args)),
                        f"{name}/student/final/distillation.json"))
        jobs.append(_embed(name, f"{name}/student/final", args))
    return jobs


def _without_map(flags: list[str]) -> list[str]:
    out, skip = [], False
    for f in flags:
        if skip:
            skip = False
        elif f in ("--layer-map", "--shared-layer-init"):
            skip = True
        else:
            out.append(f)
    return out


def step0_rows(work: Path) -> dict:
    rows = {}
    for name, (what, flags) in STEP0.items():
        folder = work / "step0" / name
        if not (folder / "embed-dev.json").is_file():
            continue
        info = read_json(folder / "student" / "final" / "distillation.json")
        embed = read_json(folder / "embed-dev.json")
        rows[name] = {"what": what, "flags": flags, "parameters": info["student"]["base_parameters"],
                      "initialisation": info.get("initialisation"), "zero_shot": embed["spearman"],
                      "embedding_layer_zero_shot": embed["embedding_layer_spearman"]}
    return rows


def point_row(work: Path, name: str, kind: str, relaxation: str, flags: list[str], teacher_parameters: int | None):
    """A grid point in the frontier's fields (probes null: no fine-tuned probe runs at this size)."""
    folder = work / name
    files = [folder / "student/final/distillation.json", folder / "embed-dev.json"]
    if not all(f.is_file() for f in files):
        return None
    info, dev = read_json(files[0]), read_json(files[1])
    shape, curve = info["student"], probe_curve(work, name)
    return {"name": name, "kind": kind, "parameters": shape["base_parameters"], "teacher_parameters": teacher_parameters,
            "fp16_megabytes": shape["fp16_megabytes"], "iterations": shape["iterations"],
            "layer_groups": shape["layer_groups"], "embedding_size": shape["embedding_size"],
            "relaxation": relaxation, "relaxation_rank": shape["relaxation_rank"], "adapters": shape["adapters"],
            "adapter_reduction_factor": shape["adapter_reduction_factor"], "layer_map": info["layer_map"],
            "initialisation": info["initialisation"], "seed": info["seed"], "tokens": info["distilled_tokens"],
            "steps": info["steps"], "dtype": info["dtype"], "machine": info["machine"],
            "train_seconds": info["train_seconds_total"], "zero_shot": dev["spearman"],
            "zero_shot_train": curve[-1]["zero_shot_spearman"] if curve else None, "zero_shot_train_pairs": TRAIN_PAIRS,
            "sentences_per_s": None, "probes": None, "curve": curve,
            "probes_reason": "no fine-tuned probes at this geometry: each costs hours on 2 cores; zero-shot only",
            "flags": flags}


def _teacher_parameters(work: Path) -> int | None:
    path = work / "step0" / "teacher" / "embed-dev.json"
    return read_json(path)["parameters"] if path.is_file() else None


def _committed(results: Path, name: str) -> dict:
    path = results / name
    return read_json(path) if path.is_file() else {}


def collect(args) -> dict:
    """step0.json, probe.json and frontier.json: the committed rows, updated with what this work
    folder holds (a stage may run over several sessions and machines: rows from elsewhere are kept),
    each written whole and atomically; what has not run yet is listed as pending."""
    work, results = Path(args.work), Path(args.results)
    old = {n: _committed(results, f"{n}.json") for n in ("step0", "probe", "frontier")}
    teacher = work / "step0" / "teacher" / "embed-dev.json"
    teacher_row = read_json(teacher) if teacher.is_file() else None
    common = {"teacher": TEACHER, "recipe": RECIPE, "dtype": DTYPE,
              "teacher_zero_shot": teacher_row["spearman"] if teacher_row else old["step0"].get("teacher_zero_shot"),
              "teacher_parameters": (teacher_row["parameters"] if teacher_row
                                     else old["step0"].get("teacher_parameters"))}
    step0 = {**common, "split": "dev", "rows": {**old["step0"].get("rows", {}), **step0_rows(work)}}
    step0["pending"] = [n for n in STEP0 if n not in step0["rows"]]
    write_json(results / "step0.json", step0)
    old_runs = old["probe"].get("runs", {})
    probe = {**common, "steps": args.steps, "train_pairs": TRAIN_PAIRS,
             "runs": {n: {"what": what, "flags": flags, "curve": probe_curve(work, n)
                          if (work / n / "student" / "final" / "distillation.json").is_file()
                          else old_runs.get(n, {}).get("curve", [])}
                      for n, (what, flags) in PROBES.items()}}
    try:
        probe["pick"] = probe_pick(probe)
    except MiniAlbertError as e:
        probe["pick"] = None
        probe["pending"] = str(e)
    write_json(results / "probe.json", probe)
    points = {p["name"]: p for p in old["frontier"].get("points", [])}
    if probe["pick"]:
        pick = probe["pick"]
        named = {"rec-e128": ("recursive", "none", pick["flags"], pick["name"])}
        named.update({n: (k, r, f, n) for n, (k, r, f) in GRID.items()})
        named.update({twin(n): (k, r, [*f, "--seed", "43"], twin(n)) for n, (k, r, f) in GRID.items()
                      if not n.endswith("-s43")})  # a release candidate's second seed, where it ran
        for name, (kind, relaxation, flags, folder) in named.items():
            row = point_row(work, folder, kind, relaxation, flags, common["teacher_parameters"])
            if row is not None:
                points[name] = {**row, "name": name}
    speeds = _committed(results, "speed.json")
    for p in points.values():
        p["sentences_per_s"] = speeds.get("points", {}).get(p["name"])
    frontier = {**common, "study": "paper-geometry", "steps": args.steps, "points": list(points.values()),
                "pending": [n for n in ("rec-e128", *GRID) if n not in points],
                "speed": {k: v for k, v in speeds.items() if k != "points"} or None}
    frontier["verdict"] = verdict(frontier, released_bar())
    write_json(results / "frontier.json", frontier)
    if any(r["curve"] for r in probe["runs"].values()):
        curves_figure(probe, frontier, FIGURE if results == RESULTS_DIR else results / "curves.png")
    return {"step0": step0, "probe": probe, "frontier": frontier}


# --- the answers: recursion or plain, and whether a student is released -------------------------

# Each plain point against the recursive points of about its size (parameters within 20%).
SAME_SIZE = {"plain-1-e128": ("rec-e128",), "plain-2-e128": ("rec-e312", "rel-e128-r32")}
MEASURES = {"zero_shot_train": "zero-shot train pairs", "zero_shot": "zero-shot dev"}
RELEASE_SHARE = 0.15  # a release must have at most this share of the teacher's parameters
RELEASE_NAME = "minialbert-mpnet"


def released_bar() -> dict:
    """What a release must beat on dev: the released student `minialbert-minilm`, as measured."""
    embed = read_json(RESULTS / "retention" / "embed.json")
    return {"name": "minialbert-minilm", "zero_shot": embed["spearman"], "source": "docs/results/retention/embed.json"}


def twin(name: str) -> str:
    """The second seed of a grid point (rec-e128's is in the grid; a release candidate gets one)."""
    return f"{name}-s43"


def verdict(frontier: dict, bar: dict) -> dict:
    """Recursion or plain at this geometry, and the release rule. The noise of the comparisons is
    the seed spread of the repeated point (seeds 42 and 43 of rec-e128, per measure): a difference
    within twice it is none. The release candidate is the point of at most RELEASE_SHARE of the
    teacher's parameters with the best train-pair score (dev is not read by the pick); it meets
    the rule only if the mean dev score of its own two seeds beats `bar` by more than twice their
    spread, and only once no grid point is pending."""
    points = {p["name"]: p for p in frontier["points"]}
    pair = [points[n] for n in SPREAD_PAIR if n in points]
    spread = {m: round(st.seed_range(p[m] for p in pair), 2) if len(pair) == 2 else None for m in MEASURES}
    comparisons = []
    for plain, rivals in SAME_SIZE.items():
        for rival in rivals:
            if plain not in points or rival not in points:
                continue
            a, b = points[rival], points[plain]
            row = {"recursive": rival, "plain": plain, "parameters": [a["parameters"], b["parameters"]]}
            for m in MEASURES:
                gap = round(a[m] - b[m], 2)
                row[m] = {"difference": gap, "winner": None if spread[m] is None else
                          st.ahead(gap, spread[m], "recursive", "plain", tie="none")}
            comparisons.append(row)
    T = frontier.get("teacher_parameters")
    inside = [p for n, p in points.items() if not n.endswith("-s43") and T and p["parameters"] <= RELEASE_SHARE * T]
    release = {"rule": f"the best train-pair score at <= {RELEASE_SHARE:.0%} of the teacher's parameters; it meets the "
                       f"rule if the mean dev score of its two seeds (42, 43) beats {bar['name']} by more than twice "
                       "their spread", "bar": bar, "candidate": None, "seeds": [], "dev": None, "margin": None,
               "needed": None, "meets_rule": None, "missed_by": None}
    if inside:
        best = max(inside, key=lambda p: p["zero_shot_train"])
        seeds = [points[n] for n in (best["name"], twin(best["name"])) if n in points]
        dev = round(st.mean(p["zero_shot"] for p in seeds), 2)
        margin = round(dev - bar["zero_shot"], 2)
        needed = round(2 * st.seed_range(p["zero_shot"] for p in seeds), 2) if len(seeds) == 2 else None
        decided = needed is not None and not frontier["pending"]
        release.update(candidate=best["name"], seeds=[p["name"] for p in seeds], dev=dev, margin=margin, needed=needed,
                       meets_rule=(margin > needed) if decided else None,
                       missed_by=round(needed - margin, 2) if decided and margin <= needed else None)
    return {"seed_spread": {"points": list(SPREAD_PAIR), **spread}, "comparisons": comparisons, "release": release,
            "complete": not frontier["pending"]}


def twin_jobs(args, pick: dict, frontier: dict) -> list[Job]:
    """The release candidate's second seed when the grid has none (rec-e128's is in the grid)."""
    name = frontier.get("verdict", {}).get("release", {}).get("candidate")
    if name is None or frontier["pending"] or twin(name) in GRID:
        return []
    flags = [*grid_flags(pick)[name], "--seed", "43"]
    return [Job(f"{twin(name)}/distill", distill_argv(f"{twin(name)}/student", flags, args.steps, _curve_flags(args)),
                f"{twin(name)}/student/final/distillation.json"), _embed(twin(name), f"{twin(name)}/student/final", args)]


def curves_figure(probe: dict, frontier: dict, path: Path) -> None:
    """Zero-shot on the train pairs against distilled tokens: each probe (solid) and grid point (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    for name, run in probe["runs"].items():
        if run["curve"]:
            ax.plot([r["tokens"] / 1e6 for r in run["curve"]], [r["zero_shot_spearman"] for r in run["curve"]],
                    marker="o", ms=3, label=f"probe: {run['what']}")
    for p in frontier["points"]:
        if p["name"] != "rec-e128" and p.get("curve"):
            ax.plot([r["tokens"] / 1e6 for r in p["curve"]], [r["zero_shot_spearman"] for r in p["curve"]],
                    ls="--", marker="s", ms=3, label=f"grid: {p['name']}")
    save_figure(fig, ax, path, f"{RECIPE} from {TEACHER}: zero-shot on {TRAIN_PAIRS} STS-B train pairs",
                "distilled tokens (millions)", "Spearman x 100", legend={"fontsize": 6})
    plt.close(fig)


def keep_record(work: Path, results: Path, job_name: str) -> None:
    """A finished distillation's run record (its distillation.json: the resolved recipe, the
    initialisation of each part, tokens, seconds, machine), committed beside the results."""
    if job_name.endswith("/distill"):
        name = job_name[: -len("/distill")]
        write_json(results / "records" / f"{name.replace('/', '-')}.json",
                   read_json(work / name / "student" / "final" / "distillation.json"))


def run(args) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    stages = [args.stage] if args.stage else ["step0", "probe", "grid"]

    def on_done(job):  # the small result files, and the page's tables from them, are rewritten as each job ends
        keep_record(work, Path(args.results), job.name)
        collect(args)
        if Path(args.results) == RESULTS_DIR:
            from . import docs

            docs.update(documents=[PAGE])

    for stage in stages:
        if stage == "step0":
            jobs = plan_step0(args)
        elif stage == "probe":
            jobs = plan_probe(args)
        else:
            pick = probe_pick(collect(args)["probe"])
            jobs = plan_grid(args, pick)
        # once the grid is in, the release candidate's second seed where the grid has none (read from the
        # frontier.json that collect wrote just before: at the start, and by on_done as each job ends)
        frontier = Path(args.results) / "frontier.json"
        more = (lambda: twin_jobs(args, pick, read_json(frontier))) if stage == "grid" else None
        if run_jobs(jobs, work, args.parallel, args.threads, on_done=on_done, more=more):
            return 1
    collect(args)
    return 0


SPEED_PAIRS = 500  # enough for a rate (about 1,000 sentences); the teacher takes minutes on 2 cores


def speed(args) -> int:
    """Sentences/s of every grid point and the teacher in ONE `bench embed --compare` run
    (docs/results/paper-geometry/speed.json; nothing else may run meanwhile). A point not trained on
    this machine is timed as its step-0 student of the same shape (speed does not depend on the
    weights' values); the file names those."""
    from minialbert.runtime import machine_description

    work = Path(args.work).resolve()
    pick = probe_pick(collect(args)["probe"])
    points = {name: (work / point_folder(name, pick) / "student" / "final", distill_argv("-", flags, 0, []))
              for name, flags in grid_flags(pick).items()}
    timed = time_students(work, points, TEACHER, args.glue_dir, args.threads, max_pairs=SPEED_PAIRS)
    if timed is None:
        return 1
    write_json(Path(args.results) / "speed.json", {
        "bench": f"bench embed --compare over every grid point and the teacher ({SPEED_PAIRS} STS-B dev pairs)",
        "machine": machine_description(), **timed})
    collect(args)
    if Path(args.results) == RESULTS_DIR:
        from . import docs

        docs.update(documents=[PAGE])
    return 0


def summary(args) -> int:
    collect(args)
    return 0


COST_STEPS = 8


def cost(args) -> int:
    """What one step of the recipe costs on this machine in bf16 and in fp32 (docs/results/paper-geometry/
    cost.json): COST_STEPS steps of `distill --recipe paper-mpnet-128` per dtype, with every thread of
    the machine and nothing else running (a timing beside another job means nothing). The seconds
    include the first step's warm-up, so they slightly overstate a long run's."""
    import subprocess
    import sys
    import tempfile

    from minialbert.runtime import machine_description

    rows = {}
    for dtype in ("bf16", "fp32"):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "minialbert", "distill", "--recipe", RECIPE, "--dtype", dtype,
                            "--max-steps", str(COST_STEPS), "--save-steps", "100000", "--out", f"{tmp}/run"],
                           check=True, stdout=subprocess.DEVNULL)
            info = read_json(f"{tmp}/run/final/distillation.json")
        seconds = info["train_seconds_this_run"]
        rows[dtype] = {"steps": info["steps"], "seconds": seconds, "seconds_per_step": round(seconds / info["steps"], 2),
                       "tokens_per_s": round(info["distilled_tokens"] / seconds, 1),
                       "hours_per_grid_point": round(STEPS * seconds / info["steps"] / 3600, 2)}
        print(dtype, rows[dtype], flush=True)
    write_json(Path(args.results) / "cost.json", {"recipe": RECIPE, "teacher": TEACHER, "machine": machine_description(),
                                                  "note": f"{COST_STEPS} steps each, first step's warm-up included",
                                                  **rows})
    return 0


def add_commands(sub, defaults) -> None:
    r = sub.add_parser("run", help="run (or continue) the stages: step0, probe, grid; resumable job by job")
    defaults(r, work=WORK)
    r.add_argument("--stage", choices=["step0", "probe", "grid"], default=None, help="one stage only")
    r.add_argument("--parallel", type=int, default=2, help="jobs at a time (2 cores: 2 jobs of one thread)")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--steps", type=int, default=STEPS, help="steps per probe and grid point (the study: 244)")
    r.add_argument("--results", default=str(RESULTS_DIR))
    r.set_defaults(func=run)
    s = sub.add_parser("summary", help="step0.json, probe.json and frontier.json from the work folder")
    defaults(s, work=WORK)
    s.add_argument("--steps", type=int, default=STEPS)
    s.add_argument("--results", default=str(RESULTS_DIR))
    s.set_defaults(func=summary)
    v = sub.add_parser("speed", help="sentences/s of every grid point and the teacher in one run (nothing else running)")
    defaults(v, work=WORK)
    v.add_argument("--steps", type=int, default=STEPS)
    v.add_argument("--threads", type=int, default=2)
    v.add_argument("--results", default=str(RESULTS_DIR))
    v.set_defaults(func=speed)
    c = sub.add_parser("cost", help="seconds per step of the recipe in bf16 and fp32 on this machine (nothing else running)")
    c.add_argument("--results", default=str(RESULTS_DIR))
    c.set_defaults(func=cost)


# --- the documentation page's tables (docs/studies/paper-geometry.md), from the committed JSON ----------

def _load(name: str) -> dict:
    path = RESULTS_DIR / f"{name}.json"
    return read_json(path) if path.is_file() else {}


def step0_table() -> str:
    doc = _load("step0")
    rows = doc.get("rows", {})
    lines = ["| initialisation | parameters | zero-shot STS-B dev | embedding layer alone |", "|---|---|---|---|"]
    if doc.get("teacher_zero_shot") is not None:
        lines.append(f"| the teacher `{TEACHER}` | {doc['teacher_parameters'] / 1e6:.1f} M | {doc['teacher_zero_shot']:.2f} | – |")
    for name in STEP0:
        r = rows.get(name)
        lines.append(f"| {STEP0[name][0]} | {r['parameters'] / 1e6:.2f} M | {r['zero_shot']:.2f} | "
                     f"{r['embedding_layer_zero_shot']:.2f} |" if r else f"| {STEP0[name][0]} | – | pending | – |")
    return "\n".join(lines)


def probe_table() -> str:
    doc = _load("probe")
    runs = doc.get("runs", {})
    lines = [f"| probe | zero-shot on {TRAIN_PAIRS} STS-B train pairs, by step |", "|---|---|"]
    for name, (what, _) in PROBES.items():
        curve = runs.get(name, {}).get("curve", [])
        cells = ", ".join(f"{r['step']}: {r['zero_shot_spearman']:.2f}" for r in curve) or "pending"
        lines.append(f"| {what} | {cells} |")
    pick = doc.get("pick")
    lines.append("")
    lines.append(f"Pick ({pick['criterion']}): **{PROBES[pick['name']][0]}**." if pick else
                 "Pick: pending (every probe must finish first).")
    return "\n".join(lines)


def frontier_table() -> str:
    doc = _load("frontier")
    points = {p["name"]: p for p in doc.get("points", [])}
    T = doc.get("teacher_parameters")
    lines = ["| point | kind | parameters (% of the teacher) | zero-shot train pairs | zero-shot dev | sentences/s |",
             "|---|---|---|---|---|---|"]
    for name in ("rec-e128", *GRID):
        p = points.get(name)
        if p is None:
            lines.append(f"| {name} | – | – | pending | pending | – |")
            continue
        share = f" ({100 * p['parameters'] / T:.0f}%)" if T else ""
        rate = p.get("sentences_per_s")
        lines.append(f"| {name} | {p['kind']}, {p['relaxation']} | {p['parameters'] / 1e6:.2f} M{share} | "
                     f"{p['zero_shot_train']:.2f} | {p['zero_shot']:.2f} | {rate if rate is not None else '–'} |")
    speed = doc.get("speed")
    if speed:
        lines.append(f"\nsentences/s: one `bench embed --compare` run over {SPEED_PAIRS} STS-B dev pairs, "
                     f"{speed['threads']} threads, {speed['machine'].get('cpu', '?')}; the teacher `{TEACHER}`: "
                     f"{speed['teacher']} sentences/s"
                     + (f"; timed at step 0 (same shape): {', '.join(speed['timed_at_step_0'])}"
                        if speed.get("timed_at_step_0") else "") + ".")
    else:
        lines.append("\nsentences/s: not measured yet (`python -m scripts.studies paper-geometry speed`, nothing "
                     "else running).")
    return "\n".join(lines)


def verdict_text() -> str:
    """Recursion or plain, and the release rule, from the committed frontier.json."""
    v = _load("frontier").get("verdict")
    if not v:
        return "Pending: the grid has not run yet."
    spread = v["seed_spread"]
    lines = [f"Noise: the seed spread (largest minus smallest score) of {' / '.join(spread['points'])} (seeds 42 "
             "and 43): "
             + ", ".join(f"{MEASURES[m]} {spread[m] if spread[m] is not None else 'pending'}" for m in MEASURES)
             + "; a difference within twice it is none.", "",
             "| recursive | plain | parameters | " + " | ".join(MEASURES.values()) + " |", "|---|---|---|---|---|"]
    for c in v["comparisons"]:
        cells = [f"{c[m]['difference']:+.2f} ({c[m]['winner'] or 'spread pending'})" for m in MEASURES]
        lines.append(f"| {c['recursive']} | {c['plain']} | {c['parameters'][0] / 1e6:.2f} M vs "
                     f"{c['parameters'][1] / 1e6:.2f} M | " + " | ".join(cells) + " |")
    if not v["comparisons"]:
        lines.append("| pending | | | | |")
    r = v["release"]
    lines.append("")
    if r["candidate"] is None:
        lines.append(f"Release (`{RELEASE_NAME}`): pending; rule: {r['rule']}.")
    else:
        seeds = " and ".join(r["seeds"])
        if r["meets_rule"]:
            outcome = (f"**meets the rule**: release it with `minialbert export WORK/{r['candidate']}/student/final "
                       f"--release {RELEASE_NAME}`")
        elif r["meets_rule"] is False:
            outcome = f"**misses the rule by {r['missed_by']:.2f}**: not released"
        elif r["needed"] is None:
            outcome = f"undecided until {twin(r['candidate'])} (its second seed) has run"
        else:
            outcome = "undecided until every grid point has run"
        needed = f"+{r['needed']:.2f}" if r["needed"] is not None else "twice the spread of two seeds"
        lines.append(f"Release of `{RELEASE_NAME}` (rule: {r['rule']}): candidate **{r['candidate']}**, dev "
                     f"{r['dev']:.2f} (mean of {seeds}), {r['margin']:+.2f} against {r['bar']['name']} "
                     f"({r['bar']['zero_shot']:.2f}); needed more than {needed}: {outcome}.")
    if not v["complete"]:
        lines.append("")
        lines.append("Provisional: grid points are still pending.")
    return "\n".join(lines)


def cost_table() -> str:
    doc = _load("cost")
    if not doc:
        return "Not measured yet: `python -m scripts.studies paper-geometry cost` (nothing else running)."
    lines = [f"Measured on {doc['machine'].get('cpu', '?')} ({doc['note']}):", "",
             "| dtype | seconds per step | tokens/s | hours per grid point (244 steps) |", "|---|---|---|---|"]
    for dtype in ("bf16", "fp32"):
        r = doc[dtype]
        lines.append(f"| {dtype} | {r['seconds_per_step']} | {r['tokens_per_s']} | {r['hours_per_grid_point']} |")
    return "\n".join(lines)
