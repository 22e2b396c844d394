"""The one job runner of every study: `minialbert` commands run in a work folder, several at a
time, each after the jobs it depends on, and the one resume rule: a job whose `done` file exists
is finished and skipped (each `minialbert` command writes that file last and atomically). A job
whose output another job reads (a teaching model's weights, a transfer set) says so with
`complete`: it is finished only when that output is there, so a lost output is rebuilt before any
job that reads it starts. Each job's wall and CPU seconds are kept per attempt in the work folder
(`job-seconds.json`), so a job cut by a kill or a machine's end still counts what it spent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

from minialbert import records

COMMAND = [sys.executable, "-m", "minialbert"]  # a job's argv follows
LEDGER = "job-seconds.json"  # in the work folder: {job: {attempt start: {"wall": s, "cpu": s}}}
LEDGER_EVERY = 15  # seconds between writes of the ledger (a kill loses at most that much of the count)


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


class Ledger:
    """Wall and CPU seconds (user + system, the process and its children, read from the OS: what a
    job costs, whatever else the machine was doing) of every attempt of every job; written to the
    work folder every LEDGER_EVERY seconds and when a job ends."""

    def __init__(self, work: Path):
        self.path, self.written = work / LEDGER, time.time()
        self.entries = records.read_json(self.path) if self.path.is_file() else {}

    def measure(self, name: str, proc: subprocess.Popen, started: float) -> None:
        try:
            t = psutil.Process(proc.pid).cpu_times()
        except psutil.Error:  # it has just ended: its last reading (at most a second old) stands
            return
        attempt = self.entries.setdefault(name, {}).setdefault(f"{started:.0f}", {})
        attempt.update(wall=round(time.time() - started, 1),
                       cpu=round(t.user + t.system + t.children_user + t.children_system, 1))

    def write(self, force: bool = False) -> None:
        if force or time.time() - self.written >= LEDGER_EVERY:
            write_json(self.path, self.entries)
            self.written = time.time()


def job_attempts(work: Path, name: str) -> dict:
    """A job's attempts so far (attempt start -> wall and CPU seconds): a kill, a rebuild and
    another session each add one."""
    return Ledger(work).entries.get(name, {})


def write_json(path: Path, obj) -> None:
    """The ledger, and a study's jobs.json (atomically: a kill never leaves half a file)."""
    records.write_json(path, obj, indent=1)


def run_jobs(jobs: list[Job], work: Path, parallel: int = 1, threads: int = 2, on_done=None, on_start=None,
             more: Callable[[], list[Job]] | None = None) -> int:
    """Run `jobs` in `work`, `parallel` at a time, each after the jobs it depends on; `on_done(job)`
    runs as each job finishes (e.g. to copy its small result files into the repository at once),
    `on_start(job)` just before it starts (e.g. to give it the finished runs it may reuse);
    `more()`, asked after each job ends, returns the jobs that can be planned now (e.g. the rows
    chosen from finished ones): those not seen yet join the queue, so no core waits for a whole
    phase to end. Returns 1 when a job failed, else 0."""
    (work / "logs").mkdir(parents=True, exist_ok=True)
    pending, finished, scheduled = [], set(), set()  # a dependency not planned here is not waited for
    # (e.g. a final row whose teacher ran in an earlier invocation; without it the job fails, naming it)

    def add(new_jobs):
        for j in new_jobs:
            if j.name not in scheduled:
                scheduled.add(j.name)
                (finished.add(j.name) if j.finished(work) else pending.append(j))

    add(jobs)
    add(more() if more else [])
    failed, running = set(), {}
    print(f"{len(scheduled)} jobs, {len(finished)} already done, {len(pending)} to run, {parallel} at a time",
          flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)}
    ledger = Ledger(work)
    while pending or running:
        for name, (job, proc, log, started) in list(running.items()):
            ledger.measure(name, proc, started)
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            ledger.write(force=True)  # before on_done, which reads it
            ok = proc.returncode == 0 and job.finished(work)
            (finished if ok else failed).add(name)
            if ok and on_done:
                on_done(job)
            print(f"{time.strftime('%H:%M:%S')} {'done' if ok else 'FAILED'} {name} ({time.time() - started:.0f} s)",
                  flush=True)
            if more:
                before = len(pending)
                add(more())
                for j in pending[before:]:
                    print(f"{time.strftime('%H:%M:%S')} planned {j.name}", flush=True)
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
                log = (work / "logs" / f"{job.name.replace('/', '_')}.log").open("a")  # an earlier attempt's stays
                log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')}: minialbert {' '.join(job.argv)}\n")
                log.flush()
                proc = subprocess.Popen([*COMMAND, *job.argv], cwd=work, env=env,
                                        stdout=log, stderr=subprocess.STDOUT)
                running[job.name] = (job, proc, log, time.time())
                print(f"{time.strftime('%H:%M:%S')} start {job.name}", flush=True)
        ledger.write()
        time.sleep(1)
    print(f"finished {len(finished)}, failed {sorted(failed) or 'none'}", flush=True)
    return 1 if failed else 0
