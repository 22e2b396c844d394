"""The docs and the committed results agree: every figure the README or a documentation page shows
that a result file also holds is written from that file (a generated block) and must match it; each study's
summary describes that study alone; no issue numbers (they mean nothing to a reader of the
repository)."""

import json
import re
import statistics
from pathlib import Path

import pytest

from scripts.studies import docs

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"


def test_every_generated_block_matches_the_committed_results():
    assert docs.stale_blocks() == []
    names = {m["name"] for doc in docs.DOCUMENTS for m in docs.BLOCK.finditer(doc.read_text())}
    assert {"retention-headline", "retention-table", "task-distillation-table", "start-curve", "measured-summary"} <= names
    # every page of the site is covered, the study pages and the README's headline included
    covered = {str(doc.relative_to(REPO)) for doc in docs.DOCUMENTS}
    assert {str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md")} <= covered
    readme = (REPO / "README.md").read_text()
    assert "<!-- generated: retention-headline -->" in readme and "<!-- generated: measured-summary -->" in readme


def test_no_issue_numbers_in_the_repository():
    pattern = re.compile(r"\bissues? #?\d+|\(#\d+\)", re.I)
    files = [p for p in REPO.rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".toml", ".txt")
             and not {".venv", "runs", ".git"} & set(p.relative_to(REPO).parts)]
    found = [f"{p.relative_to(REPO)}:{n}" for p in files for n, line in enumerate(p.read_text().splitlines(), 1)
             if pattern.search(line)]
    assert not found, found


def test_each_summary_describes_its_own_study():
    budget = json.loads((RESULTS / "budget-curve" / "summary.json").read_text())
    assert budget["teacher_average"] == budget["models"]["teacher"]["average"]
    assert all(not k.startswith("task-distillation") for k in budget["models"])
    def nulls(node, path=""):  # a figure a study did not measure is absent, never null
        if isinstance(node, dict):
            return [p for k, v in node.items() for p in nulls(v, f"{path}.{k}")]
        return [path] if node is None and "zero_shot" in path else []

    assert not nulls(budget)
    td = json.loads((RESULTS / "task-distillation" / "summary.json").read_text())
    assert td["teacher_average"] == round(statistics.fmean(v["teacher"]["mean"] for v in td["best_scores"].values()), 2)


def test_the_retention_summary_is_recomputed_from_its_committed_result_files():
    from scripts.studies import retention

    if not (RESULTS / "retention" / "summary.json").is_file():  # a rerun in progress: said so, and no summary
        assert "being rerun" in retention.headline()  # can be made from rows whose picks lack their seeds
        with pytest.raises(SystemExit, match="no seeded row|no results.json"):
            retention.summarise_rows(RESULTS / "retention", "s", "s")
        return
    summary = json.loads((RESULTS / "retention" / "summary.json").read_text())
    again = retention.summarise_rows(RESULTS / "retention", summary["student"], summary["student_path"],
                                     {"student": summary["zero_shot_spearman"],
                                      "teacher": summary["teacher_zero_shot_spearman"]})
    assert again == summary
    assert summary["student"] in summary["models"] and (REPO / summary["student_path"] / "config.json").is_file()
    for task in summary["included_tasks"]:  # no included task has a teacher at or below its majority baseline
        row = summary["per_task"][task]
        assert row["teacher"]["mean"] - row["majority"] > max(row["teacher"]["std"], 0)
        assert abs(row["gain_kept"] - (row["student"]["mean"] - row["majority"])
                   / (row["teacher"]["mean"] - row["majority"])) < 1e-3
    kept = [summary["per_task"][t]["gain_kept"] for t in summary["included_tasks"]]
    assert abs(summary["gain_retention"] - statistics.fmean(kept)) < 1e-4
