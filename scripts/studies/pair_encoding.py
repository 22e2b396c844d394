"""Cross- vs bi-encoder fine-tuning of one student and of the teacher on the sentence-pair tasks
(docs/studies/pair-encoding.md), one fixed protocol for every row: lr 1e-4, 3 epochs, batch 16, 10%
warm-up, mean pooling, `--seeds` seeds. Results in docs/results/pair-encoding/."""

from __future__ import annotations

from pathlib import Path

from minialbert.records import copy_file

from .common import RESULTS, printing, protocol_argv, results_table
from .jobs import Job, run_jobs

PAIR_TASKS = ["stsb", "mrpc", "rte"]
RESULTS_DIR = RESULTS / "pair-encoding"


def plan(args) -> list[Job]:
    """The student's rows first, then the teacher's."""
    jobs = []
    for label, model in (("student", str(Path(args.student).resolve())), ("teacher", "minilm")):
        for task in PAIR_TASKS:
            for encoding in ("bi", "cross"):
                out = f"{label}-{encoding}/{task}"
                jobs.append(Job(out, protocol_argv(args, model, task, out, ["--pair-encoding", encoding],
                                                   seeds=args.seeds), f"{out}/results.json"))
    return jobs


def run(args) -> int:
    """Run (or continue) the jobs; copy each finished results.json into the repository."""
    work = Path(args.work)
    jobs = plan(args)

    def keep(job):  # results.json into the repository as soon as the job ends
        copy_file(work / job.done, RESULTS_DIR / job.done)  # atomic and verified

    for job in jobs:  # jobs finished in an earlier call
        if (work / job.done).exists():
            keep(job)
    code = run_jobs(jobs, work, args.jobs, args.threads, on_done=keep)
    print(table())
    return code


def table() -> str:
    return results_table(RESULTS_DIR, PAIR_TASKS, "encoding", lambda name: name.rsplit("-", 1))



def add_commands(sub, defaults) -> None:
    q = sub.add_parser("run", help="cross- vs bi-encoder fine-tuning of a student and the teacher (resumable)")
    q.add_argument("--student", required=True, help="the distilled student's folder")
    defaults(q, work="runs/pair-encoding")
    q.add_argument("--seeds", type=int, default=2)
    q.add_argument("--jobs", type=int, default=1)
    q.add_argument("--threads", type=int, default=2)
    q.set_defaults(func=run)
    sub.add_parser("table", help="the table from the committed results").set_defaults(func=printing(table))
