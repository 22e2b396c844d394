"""The retention study's jobs: the teaching stages, the exploratory rows, the picks (the grid with
seed 42, then the reporting seeds), what each job starts from (the committed run records it may
reuse, copied in whole and verified) and what each finished job leaves in the repository."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from minialbert.errors import MiniAlbertError
from minialbert.records import copy_file, copy_tree, read_json
from minialbert.taskdistill.teacher import resolve_teacher_folder

from ..common import ROW_FOLDER, protocol_argv, task_folder
from ..jobs import Job, job_attempts, run_jobs, write_json
from ..task_distillation import PIPELINES, parse_folder, read_rows
from .config import (EXPLORATORY_LR, GRID, PICK_RUNS, RESULTS_DIR, SEEDED_SUFFIX, TEACHER_MLM, TEACHING,
                     pipelines, picks)


def _kept_model(folder: str):
    """Completion of a teaching model: its best run's weights are there (not only its results),
    found as --teacher finds them."""
    def complete(work: Path) -> bool:
        try:
            return any(Path(resolve_teacher_folder(str(work / folder))).glob("*.safetensors"))
        except MiniAlbertError:  # no kept model, or a damaged results.json
            return False
    return complete


def _has_weights(folder: str):
    return lambda work: any((work / folder).glob("*.safetensors"))


def _has_transfer_set(folder: str):
    """Completion of a row that builds the transfer set another row reads: its labelled rows are there."""
    return lambda work: any(d.is_dir() for d in (work / folder).glob("transfer/*/data"))


def _has_reporting_seeds(done: str):
    """Completion of a pick's row: its results.json holds the picked rate at the pick's seed and at
    every reporting seed (a row of an earlier protocol, seeds 42-44, waits for seed 45)."""
    def complete(root: Path) -> bool:
        try:
            return read_json(root / done)["best"].get("runs", 1) >= PICK_RUNS
        except (MiniAlbertError, KeyError, TypeError, AttributeError):
            return False
    return complete


def _model(args, who: str) -> str:
    return "minilm" if who == "teacher" else str(Path(args.student).resolve())


def _finetune(args, model: str, task: str, out: str, lrs: list[str], flags, seeds: int, save: str) -> list[str]:
    """A row's command line; a pick (seeds > 1) runs its seeds on SST-2 too (seed 42 picks, the
    others report)."""
    argv = protocol_argv(args, model, task, out, flags, f"{TEACHING}/{task_folder(task)}", lrs, seeds,
                         "--seeds-at-best", save, one_seed_on_sst2=seeds == 1)
    if "--augment" in flags:
        argv += ["--augment-mlm", TEACHER_MLM]
    for flag in ("max_train_samples", "max_transfer_samples"):  # small subsets: trying the stages out
        if getattr(args, flag, None) and (flag == "max_train_samples" or "--transfer-data" in flags):
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return argv


def _reads(flags, tf: str) -> list[str]:
    """The teaching stages a row with these finetune flags reads (job names)."""
    reads = [f"{TEACHING}/{tf}"] if "--teacher" in flags else []
    return reads + ([TEACHER_MLM] if "--augment" in flags else [])


def teaching_jobs(args, who: str) -> list[Job]:
    """The teaching stages `who`'s rows read: the tuned teacher per task (the teacher's own
    cross-encoder row takes its pick from there; every task-distillation row is taught by it) and
    the fit-head teacher when a row augments. Finished only when their weights are there."""
    jobs = []
    if who == "student" and any("--augment" in PIPELINES[p].flags for t in args.tasks for p in pipelines(args, who, t)):
        jobs.append(Job(TEACHER_MLM, ["fit-head", "--teacher", "minilm", "--max-steps", str(args.fit_head_steps),
                                      "--batch-size", "32", "--dtype", args.dtype, "--out", TEACHER_MLM],
                        f"{TEACHER_MLM}/fit_head.json", complete=_has_weights(TEACHER_MLM)))
    for task in args.tasks:
        distils = any("--teacher" in PIPELINES[p].flags for p in pipelines(args, who, task))
        if who == "teacher" or distils:
            grid = f"{TEACHING}/{task_folder(task)}"
            jobs.append(Job(grid, _finetune(args, "minilm", task, grid, GRID["teacher"], PIPELINES["cross"].flags,
                                            1, "best"), f"{grid}/results.json", complete=_kept_model(grid)))
    return jobs


def plan(args, who: str) -> list[Job]:
    """`who`'s teaching stages, then its exploratory rows (one seed, lr 1e-4), each waiting for what
    it reads: a task-distillation row for its task's teacher, an augmenting row for the fit-head
    teacher, td12-transfer for the transfer set td2-transfer labelled."""
    jobs = teaching_jobs(args, who)
    for task in args.tasks:
        tf = task_folder(task)
        for pipeline in pipelines(args, who, task):
            out, flags = f"{who}-{pipeline}/{tf}", PIPELINES[pipeline].flags
            after = _reads(flags, tf)
            if (who, pipeline) == ("teacher", "cross"):  # its run is the teaching grid's, reused
                after.append(f"{TEACHING}/{tf}")
            if pipeline == "td12-transfer":  # reads the set td2-transfer labelled
                after.append(f"{who}-td2-transfer/{tf}")
            complete = _has_transfer_set(out) if pipeline == "td2-transfer" else None
            jobs.append(Job(out, _finetune(args, _model(args, who), task, out, [EXPLORATORY_LR], flags, 1, "none"),
                            f"{out}/results.json", after, complete))
    return jobs


def plan_finals(args, who: str, results_dir: Path | None = None, report: bool = True) -> list[Job]:
    """The picked pipeline of each task (best exploratory dev score), on the grid with seed 42, then
    its picked rate with the reporting seeds 43-45 (finetune --seeds-at-best 4: a committed row of
    seeds 42-44 is reused and runs seed 45 alone; SST-2's one-seed row runs 43-45).
    A task is picked only once every candidate's exploratory row is in: a pick among some is no pick
    (`report`: say which rows a task still waits for)."""
    results_dir = results_dir or RESULTS_DIR
    rows = read_rows(results_dir)
    jobs = teaching_jobs(args, who)
    for task, row in picks(rows, who).items():
        missing = [p for p in pipelines(args, who, task) if (who, p, task) not in rows]
        if task not in args.tasks or missing:
            if task in args.tasks and report:
                print(f"{who} {task}: not picked yet, no exploratory row of {', '.join(missing)}", flush=True)
            continue
        tf, flags = task_folder(task), PIPELINES[row.pipeline].flags
        out = f"{who}-{row.pipeline}{SEEDED_SUFFIX}/{tf}"
        jobs.append(Job(out, _finetune(args, _model(args, who), task, out,
                                       _final_grid(who, row.pipeline, task, results_dir), flags, PICK_RUNS, "none"),
                        f"{out}/results.json", _reads(flags, tf), _has_reporting_seeds(f"{out}/results.json")))
    return jobs


def _final_grid(who: str, pipeline: str, task: str, results_dir: Path) -> list[str]:
    """The learning rates of a final row. The teacher's cross-encoder has been through the grid
    already, as the teaching model (the same command line but for the models it saves, seed 42):
    its final row runs the rate picked there, with the seeds; every other row runs the grid."""
    teaching = results_dir / TEACHING / task_folder(task) / "results.json"
    if (who, pipeline) == ("teacher", "cross") and teaching.is_file():
        return [f"{read_json(teaching)['best']['learning_rate']:g}"]
    return GRID[who]


def _reuse_runs(work: Path, results_dir: Path, job: Job) -> None:
    """A job starts with every finished run it may reuse: the records committed beside its own row
    (a study resumed on another machine reuses them: run identities come from content), those of its
    exploratory row, for the teacher's cross-encoder those of the teaching model's grid, and the
    transfer set its exploratory row (td12-transfer: td2-transfer's) labelled. finetune reuses a run or a transfer set only
    where its identity is the same, and runs again a run whose kept model is missing."""
    if job.name == TEACHER_MLM:
        return
    target = work / Path(job.done).parent
    row = target.parent.name
    sources = [Path(row) / target.name]
    if ROW_FOLDER.match(row):
        model, pipeline, _ = parse_folder(row)
        sources.append(Path(f"{model}-{pipeline}") / target.name)
        if (model, pipeline) == ("teacher", "cross"):
            sources.append(Path(TEACHING) / target.name)
    (target / "runs").mkdir(parents=True, exist_ok=True)
    chosen: dict[str, Path] = {}  # a record's name -> the first source that holds it
    for source in sources:
        for root in (results_dir, work):
            if (root / source).resolve() == target.resolve():
                continue  # the job's own folder: what it holds is checked against the sources, not one
            for record in sorted((root / source / "runs").glob("*.json")):
                chosen.setdefault(record.name, record)
    for name, record in chosen.items():  # a copy cut by a kill is repaired: done only when the bytes match
        copy_file(record, target / "runs" / name)
    if ROW_FOLDER.match(row):  # the labelled set of its exploratory row, or td2-transfer's for td12-transfer
        same_set = [f"{model}-{pipeline}"] + ([f"{model}-td2-transfer"] if pipeline == "td12-transfer" else [])
        sets: dict[str, Path] = {}
        for built in sorted(b for name in same_set for b in work.glob(f"{name}/{target.name}/transfer/*/data")):
            sets.setdefault(built.parent.name, built.parent)
        for key, built in sets.items():  # whole and verified, or copied again (records.copy_tree)
            copy_tree(built, target / "transfer" / key)


def _keep(work: Path, results_dir: Path):
    """On a job's end: its results.json and every run record and transfer-set description beside it
    go into the repository's folder (a teaching stage's fit_head.json too) and the records of runs
    it no longer reports (an older identity) leave it, its seconds into
    `jobs.json`; the summary of an older set of rows no longer holds, so it goes."""
    def keep(job):
        count_seconds(results_dir / "jobs.json", job.name, job_attempts(work, job.name))
        folder = work / Path(job.done).parent
        records = [folder / "runs" / f"{i}.json" for i in _run_ids(work / job.done)]  # the row's own runs only
        for f in [work / job.done, *records, *folder.glob("transfer/*/transfer.json")]:
            copy_file(f, results_dir / f.relative_to(work))
        kept = results_dir / folder.relative_to(work)
        reported = {r.stem for r in records}
        for stale in (kept / "runs").glob("*.json"):  # records of a run the row no longer reports
            if stale.stem not in reported:
                stale.unlink()
        (results_dir / "summary.json").unlink(missing_ok=True)
    return keep


def count_seconds(path: Path, name: str, attempts: dict) -> None:
    """jobs.json: every attempt of every job (jobs.py's ledger: wall and CPU seconds; a job cut by a
    kill or a session's end is several attempts), merged by start time, so counting twice changes
    nothing and attempts made on another machine stay; `wall` and `cpu` are the job's totals."""
    if not attempts:
        return
    timings = read_json(path) if path.is_file() else {}
    entry = timings.setdefault(name, {})
    entry["attempts"] = merged = {**entry.get("attempts", {}), **attempts}
    for kind in ("wall", "cpu"):
        entry[kind] = round(sum(a.get(kind, 0.0) for a in merged.values()), 1)
    write_json(path, dict(sorted(timings.items())))


def _run_ids(results: Path) -> list[str]:
    """The runs a results.json reports (none for another done file, such as fit_head.json)."""
    if results.name != "results.json":
        return []
    return [i for c in read_json(results).get("configs", []) for i in c.get("run_ids", [])]


def unrecorded_rows(results_dir: Path) -> list[Path]:
    """The results.json files under `results_dir` that a run record of theirs is missing beside."""
    stale = []
    for f in sorted(results_dir.glob("*/*/results.json")):
        run_ids = _run_ids(f)
        if not run_ids or any(not (f.parent / "runs" / f"{i}.json").is_file() for i in run_ids):
            stale.append(f)
    return stale


def prune_unrecorded(results_dir: Path) -> None:
    """Rows that cannot be audited (a run record of theirs is missing) are removed, to be rerun."""
    stale = unrecorded_rows(results_dir)
    for f in stale:
        print(f"no run records beside {f.relative_to(results_dir)}: removed, it is rerun", flush=True)
        shutil.rmtree(f.parent)
    if stale:
        (results_dir / "summary.json").unlink(missing_ok=True)


def study_dtype(results_dir: Path, requested: str | None) -> str:
    """The one dtype of every row of the study: the dtype its committed rows ran in (run records,
    fit_head.json), else `requested`, else fp32 (fast on every CPU, and within a few last bits the
    same numbers on each; bf16 is fast only on some). `--dtype auto` would resolve per machine, so a
    study resumed on another CPU would recompute its finished rows in another dtype and mix the two;
    a request against the committed rows is refused."""
    found: dict[str, list[str]] = {}
    for f in sorted(results_dir.glob("*/*/runs/*.json")) + sorted(results_dir.glob("*/fit_head.json")):
        record = read_json(f)  # a damaged file: one paragraph naming it, not a traceback
        dtype = record.get("identity", record).get("dtype")
        if dtype:
            found.setdefault(dtype, []).append(str(f.relative_to(results_dir)))
    if len(found) > 1:
        mixed = ", ".join(f"{d}: {len(f)} files, e.g. {f[0]}" for d, f in found.items())
        raise MiniAlbertError(f"{results_dir}: the committed rows mix dtypes ({mixed}); "
                              "remove the rows of the dtype that does not belong, and they are rerun in the other.")
    if found and requested and requested not in found:
        (dtype, files), = found.items()
        raise MiniAlbertError(f"--dtype {requested}: the committed rows under {results_dir} ran in {dtype} ({len(files)} "
                              f"files, e.g. {files[0]}), and one study's rows share one dtype. Leave --dtype out (or "
                              f"give {dtype}) to continue the study, or start a new one with --results and --work "
                              "elsewhere.")
    return next(iter(found), None) or requested or "fp32"


def study_complete(args, results_dir: Path) -> list[str]:
    """The rows the summary still needs (empty when the study is complete)."""
    rows = read_rows(results_dir)
    missing = []
    for who in args.who:
        for task in args.tasks:
            missing += [f"{who}-{p}/{task_folder(task)}" for p in pipelines(args, who, task) if (who, p, task) not in rows]
        for t, r in picks(rows, who).items():
            folder = f"{who}-{r.pipeline}{SEEDED_SUFFIX}/{task_folder(t)}"
            if t in args.tasks and not _has_reporting_seeds(f"{folder}/results.json")(results_dir):
                missing.append(folder)
    return missing


def run(args) -> int:
    """Run (or continue) the study, in one command from a fresh clone: the teacher's and the
    student's teaching stages and exploratory rows in one queue, each pick (the grid, then seeds)
    joining it as soon as its task's rows are in; every finished job's small files go into the
    repository as it ends, and the summary is written at the end (with the runs still pending named
    in it, while there are some)."""
    work, results_dir = Path(args.work), Path(args.results)
    args.dtype = study_dtype(results_dir, args.dtype)
    print(f"every row in {args.dtype}", flush=True)
    work.mkdir(parents=True, exist_ok=True)
    prune_unrecorded(results_dir)
    keep = _keep(work, results_dir)
    start = functools.partial(_reuse_runs, work, results_dir)

    def finals():  # the picks whose candidates are all in, planned as soon as they are
        return [j for who in args.who for j in plan_finals(args, who, results_dir, report=False)]

    jobs = [j for who in args.who for j in plan(args, who)]
    for job in jobs + finals():
        if job.finished(work) and not (results_dir / job.done).exists():
            keep(job)
    code = run_jobs(jobs, work, args.jobs, args.threads, on_done=keep, on_start=start, more=finals)
    for who in args.who:
        plan_finals(args, who, results_dir)  # says which picks still wait, and for what
    from .summary import write_summary

    missing = study_complete(args, results_dir)
    try:  # once every task has its picks: the summary, provisional while runs are pending (it names them)
        write_summary(results_dir, args, args.tasks)
    except SystemExit as e:  # a task not picked yet: no summary can be made
        print(e, flush=True)
    if missing:
        print(f"the study is not complete; still missing: {', '.join(missing)}", flush=True)
        return code or 1
    return code


