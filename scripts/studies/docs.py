"""The README's and the documentation pages' figures that the committed JSON also holds are written
from it: each sits in a marked block,

    <!-- generated: NAME -->
    ...
    <!-- end: NAME -->

which `python -m scripts.studies docs update` rewrites from the result files; `docs check` (and
tests/test_docs.py) fails when a block differs from what the files give."""

from __future__ import annotations

import re
import sys

from minialbert.records import write_text

from .common import REPO

# The README and every page of the documentation site (a page added under docs/ is covered as it is).
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)


def generators() -> dict:
    from . import distillation_start, frontier, pair_encoding, paper_geometry, retention, task_distillation

    return {"task-distillation-table": task_distillation.table, "pair-encoding-table": pair_encoding.table,
            "retention-table": retention.table,
            "retention-task-distillation": retention.task_distillation_table, "retention-headline": retention.headline,
            "retention-goals": retention.goals,
            "retention-embeddings": retention.embeddings_table, "embedding-goals": retention.embedding_goals,
            "start-curve": distillation_start.table, "frontier-table": frontier.committed_table,
            "frontier-pick": frontier.committed_pick, "measured-summary": measured_summary,
            "paper-geometry-step0": paper_geometry.step0_table, "paper-geometry-probe": paper_geometry.probe_table,
            "paper-geometry-frontier": paper_geometry.frontier_table, "paper-geometry-cost": paper_geometry.cost_table,
            "paper-geometry-verdict": paper_geometry.verdict_text}


def measured_summary() -> str:
    """The README's short table of what was measured on the released student, from the retention
    study's summary.json and its `bench embed --compare` run (embed.json)."""
    import json

    from .retention import RESULTS_DIR

    s = json.loads((RESULTS_DIR / "summary.json").read_text())
    embed = json.loads((RESULTS_DIR / "embed.json").read_text())
    teacher = embed["compare"]["minilm"]
    static = max((v for k, v in embed["compare"].items() if k.startswith("model2vec:")), key=lambda v: v["spearman"])
    provisional = "" if s.get("complete", True) else f" (provisional: {len(s['pending'])} runs pending)"
    return "\n".join([
        "| measured on `minialbert-minilm` | figure |",
        "|---|---|",
        f"| parameters | {s['student_parameters'] / 1e6:.2f} M, {100 * s['parameter_ratio']:.0f}% of its teacher's |",
        f"| gain retention, fine-tuned ({len(s['included_tasks'])} tasks) | {s['gain_retention']:.3f}{provisional} |",
        f"| plain retention (ratio of the averages) | {s['retention']:.3f} ({s['student_average']:.2f} against "
        f"{s['teacher_average']:.2f}){provisional} |",
        f"| zero-shot STS-B dev (Spearman x 100) | {s['zero_shot_spearman']:.2f} (teacher "
        f"{s['teacher_zero_shot_spearman']:.2f}; `{static['model']}` {static['spearman']:.2f}) |",
        f"| sentences/s against the teacher, same run | {teacher['speedup']:.2f}x |",
    ])


def render(text: str, make: dict) -> str:
    def replace(m):
        if m["name"] not in make:
            raise SystemExit(f"unknown generated block {m['name']!r}; known: {', '.join(make)}")
        return m.group(1) + make[m["name"]]().rstrip("\n") + "\n" + m.group(4)

    return BLOCK.sub(replace, text)


def stale_blocks() -> list[str]:
    """'FILE: NAME' for every block whose text differs from what the result files give."""
    make, stale = generators(), []
    for doc in DOCUMENTS:
        text = doc.read_text()
        for m in BLOCK.finditer(text):
            if render(m.group(0), make) != m.group(0):
                stale.append(f"{doc.relative_to(REPO)}: {m['name']}")
    return stale


def update(args=None, documents=None) -> int:
    """Rewrite the generated blocks of `documents` (default: the README and every page)."""
    make = generators()
    for doc in documents or DOCUMENTS:
        text = doc.read_text()
        new = render(text, make)
        if new != text:
            write_text(doc, new)  # atomic: a kill never leaves half a README
            print(f"updated {doc.relative_to(REPO)}")
    return 0


def check(args) -> int:
    stale = stale_blocks()
    for line in stale:
        print(f"stale: {line}", file=sys.stderr)
    return 1 if stale else 0


def add_commands(sub, defaults) -> None:
    sub.add_parser("update", help="rewrite every generated block from the result files").set_defaults(func=update)
    sub.add_parser("check", help="fail when a generated block differs from the result files").set_defaults(func=check)
