"""Cross-encoder vs bi-encoder (siamese) fine-tuning of the same student and of its teacher, on the
GLUE sentence-pair tasks (docs/RESULTS.md, "Pair encoding").

    python scripts/pair_encoding_study.py run --student runs/distill/final     # resumable, job by job
    python scripts/pair_encoding_study.py table                                 # markdown table

Protocol (the same for every row): lr 1e-4, 3 epochs, batch 16, 10% warm-up, max length 128, mean
pooling for the bi-encoder; seeds 42 and 43. Every job is one `minialbert finetune` call; a job
whose results.json exists is skipped, and each finished job's results.json is copied to
docs/results/pair-encoding/ at once, so the numbers outlive the machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TASKS = ["stsb", "mrpc", "rte"]
RESULTS = REPO / "docs" / "results" / "pair-encoding"


def run(args) -> int:
    glue = Path(args.glue_dir)
    rows = [(label, model, task, encoding) for label, model in (("student", args.student), ("teacher", "minilm"))
            for task in TASKS for encoding in ("bi", "cross")]  # the student first, then the teacher
    for model_label, model, task, encoding in rows:
        label = f"{model_label}-{encoding}/{task}"
        out = Path(args.work) / label
        if (out / "results.json").exists():
            print(f"{label}: done", flush=True)
        else:
            print(f"{label}: running", flush=True)
            argv = [sys.executable, "-m", "minialbert", "finetune", "--model", model, "--task", task, "--data-dir",
                    str(glue), "--pair-encoding", encoding, "--lr", "1e-4", "--epochs", "3", "--batch-size", "16",
                    "--runs", str(args.seeds), "--save-models", "none", "--out", str(out)]
            with open(Path(args.work) / f"{label.replace('/', '-')}.log", "w") as log:
                if subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                    print(f"{label}: FAILED (see its log)", flush=True)
                    continue
        target = RESULTS / label
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "results.json", target / "results.json")
    return 0


def table(args) -> int:
    import json

    header = "| model | encoding | " + " | ".join(TASKS) + " |"
    lines = [header, "|" + "---|" * (2 + len(TASKS))]
    for folder in sorted(p for p in RESULTS.iterdir() if p.is_dir()):
        model, encoding = folder.name.rsplit("-", 1)
        cells = []
        for task in TASKS:
            f = folder / task / "results.json"
            if not f.exists():
                cells.append("")
                continue
            best = json.loads(f.read_text())["best"]
            spread = f" ± {100 * best['std_score']:.2f}" if best["runs"] > 1 else ""
            cells.append(f"{100 * best['mean_score']:.2f}{spread} ({best['runs']})")
        lines.append(f"| {model} | {encoding} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--student", default="runs/distill/final")
    r.add_argument("--glue-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    r.add_argument("--work", default="runs/pair-encoding")
    r.add_argument("--seeds", type=int, default=2)
    r.set_defaults(func=run)
    sub.add_parser("table").set_defaults(func=table)
    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
