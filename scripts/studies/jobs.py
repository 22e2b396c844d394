"""The one job runner of every study: `minialbert` commands run in a work folder, several at a
time, each after the jobs it depends on, and the one resume rule: a job whose `done` file exists
is finished and skipped (each `minialbert` command writes that file last and atomically). A job
whose output another job reads (a teaching model's weights, a transfer set) says so with
`complete`: it is finished only when that output is there, so a lost output is rebuilt before any
job that reads it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Job:
    name: str
    argv: list[str]  # the `minialbert` command line, without the program name
    done: str  # the file (relative to the work folder) that exists once the job has finished
    after: list[str] = field(default_factory=list)  # names of the jobs it needs first
    # what the jobs after it read, beyond `done` (e.g. the weights): work folder -> present
    complete: Callable[[Path], bool] | None = None

    def finished(self, work: Path) -> bool:
        return (work / self.done).exists() and (self.complete is None or self.complete(work))


def run_jobs(jobs: list[Job], work: Path, parallel: int = 1, threads: int = 2, on_done=None, on_start=None) -> int:
    """Run `jobs` in `work`, `parallel` at a time, each after the jobs it depends on; `on_done(job)`
    runs as each job finishes (e.g. to copy its small result files into the repository at once),
    `on_start(job)` just before it starts (e.g. to give it the finished runs it may reuse).
    Returns 1 when a job failed, else 0."""
    (work / "logs").mkdir(parents=True, exist_ok=True)
    pending = [j for j in jobs if not j.finished(work)]
    finished = {j.name for j in jobs if j not in pending}
    scheduled = {j.name for j in jobs}  # a dependency not planned here is not waited for (e.g. a final
    # row whose teacher ran in an earlier invocation; without that teacher the job fails, naming it)
    failed, running = set(), {}
    print(f"{len(jobs)} jobs, {len(finished)} already done, {len(pending)} to run, {parallel} at a time", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)}
    while pending or running:
        for name, (job, proc, log, started) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            ok = proc.returncode == 0 and job.finished(work)
            (finished if ok else failed).add(name)
            if ok and on_done:
                on_done(job)
            print(f"{time.strftime('%H:%M:%S')} {'done' if ok else 'FAILED'} {name} ({time.time() - started:.0f} s)",
                  flush=True)
        for job in list(pending):
            if len(running) >= parallel:
                break
            if any(a in failed for a in job.after):
                pending.remove(job)
                failed.add(job.name)
                continue
            if job.finished(work):  # finished meanwhile by another invocation
                pending.remove(job)
                finished.add(job.name)
                continue
            if all(a in finished or a not in scheduled for a in job.after):
                pending.remove(job)
                if on_start:
                    on_start(job)
                log = (work / "logs" / f"{job.name.replace('/', '_')}.log").open("w")
                proc = subprocess.Popen([sys.executable, "-m", "minialbert", *job.argv], cwd=work, env=env,
                                        stdout=log, stderr=subprocess.STDOUT)
                running[job.name] = (job, proc, log, time.time())
                print(f"{time.strftime('%H:%M:%S')} start {job.name}", flush=True)
        time.sleep(1)
    print(f"finished {len(finished)}, failed {sorted(failed) or 'none'}", flush=True)
    return 1 if failed else 0
