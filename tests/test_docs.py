"""The docs and the committed results agree: every figure the README or a documentation page shows
that a result file also holds is written from that file (a generated block) and must match it; each study's
summary describes that study alone; no issue numbers (they mean nothing to a reader of the
repository)."""

import json
import re
import statistics
from pathlib import Path

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


def test_the_retention_summary_is_committed_and_agrees_with_its_rows():
    """summary.json must exist (the README's headline is written from it) and hold what its rows
    give: each reported score is recomputed here by hand from the committed run records of the
    pick's row (the seeds other than 42, which picked), not by the code that wrote it; then the
    whole summary must equal what the study code makes of the rows today (stale otherwise)."""
    from scripts.studies import retention

    path = RESULTS / "retention" / "summary.json"
    assert path.is_file(), "docs/results/retention/summary.json is missing: run `python -m scripts.studies retention summary`"
    summary = json.loads(path.read_text())
    for task, entry in summary["per_task"].items():
        for who in ("student", "teacher"):
            e = entry[who]
            folder = RESULTS / "retention" / f"{who}-{e['pipeline']}-3seeds" / task.replace(":", "-")
            if not (folder / "results.json").is_file():
                assert e["seeds"] == [] and e["mean"] is None, (task, who)
                continue
            result = json.loads((folder / "results.json").read_text())
            records = [json.loads((folder / "runs" / f"{i}.json").read_text()) for i in result["best"]["run_ids"]]
            scores = {r["seed"]: 100 * (r["metrics"]["test"]["f1"] if task.startswith("ner:") else r["score"])
                      for r in records if r["seed"] != 42}
            assert e["seeds"] == sorted(scores) and e["pending_seeds"] == [s for s in (43, 44, 45) if s not in scores]
            if scores:
                assert e["mean"] == round(statistics.fmean(scores.values()), 2), (task, who)
            if len(scores) > 1:
                assert e["std"] == round(statistics.stdev(scores.values()), 2), (task, who)
        if "gain_kept" in entry:
            s, t, m = entry["student"]["mean"], entry["teacher"]["mean"], entry["majority"]
            assert t - m > entry["teacher"]["std"] and abs(entry["gain_kept"] - (s - m) / (t - m)) < 1e-3
    kept = [summary["per_task"][t]["gain_kept"] for t in summary["included_tasks"]]
    assert abs(summary["gain_retention"] - statistics.fmean(kept)) < 1e-4
    assert summary["complete"] == (not summary["pending"])
    again = retention.summarise_rows(RESULTS / "retention", summary["student"], summary["student_path"],
                                     {"student": summary["zero_shot_spearman"],
                                      "teacher": summary["teacher_zero_shot_spearman"]})
    assert again == summary, "summary.json is stale against its rows: run `python -m scripts.studies retention summary`"
    assert (REPO / summary["student_path"] / "config.json").is_file()
