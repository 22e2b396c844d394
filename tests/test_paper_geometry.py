"""The paper-geometry study's plan and bookkeeping (scripts/studies/paper_geometry.py), on fake
work folders: no model is loaded."""

import json
from argparse import Namespace

import pytest

from scripts.studies import paper_geometry as pg


def _args(tmp_path):
    return Namespace(work=str(tmp_path / "work"), results=str(tmp_path / "results"), glue_dir="GLUE",
                     steps=pg.STEPS, parallel=1, threads=1)


def test_every_planned_command_is_accepted_by_the_minialbert_parser(tmp_path):
    from minialbert.cli import build_parser

    args = _args(tmp_path)
    pick = {"name": "probe-uniform-lr1e-4", "flags": pg.PROBES["probe-uniform-lr1e-4"][1]}
    jobs = pg.plan_step0(args) + pg.plan_probe(args) + pg.plan_grid(args, pick)
    parser = build_parser()
    for job in jobs:
        parsed = parser.parse_args(job.argv)  # a misspelt flag exits here
        if job.argv[0] == "distill":
            assert parsed.dtype == pg.DTYPE  # one dtype for the whole grid


def test_plain_points_take_their_own_map_not_the_picks(tmp_path):
    pick = {"name": "probe-uniform-lr1e-4", "flags": ["--layer-map", pg.UNIFORM, "--learning-rate", "3e-5"]}
    jobs = {j.name: j.argv for j in pg.plan_grid(_args(tmp_path), pick)}
    plain = jobs["plain-2-e128/distill"]
    assert plain.count("--layer-map") == 1 and plain[plain.index("--layer-map") + 1] == "6,12"
    assert "3e-5" in plain  # the picked rate stays
    assert jobs["rel-e128-r32/distill"].count("--layer-map") == 1


def _fake_run(folder, spearman_curve, dev=50.0):
    (folder / "student" / "final").mkdir(parents=True)
    info = {"student": {"base_parameters": 1000, "fp16_megabytes": 0.002, "iterations": 12, "layer_groups": 1,
                        "embedding_size": 128, "relaxation_rank": 0, "adapters": True, "adapter_reduction_factor": 16},
            "layer_map": [12] * 12, "initialisation": {"embedding_init": "teacher-svd"}, "seed": 42,
            "distilled_tokens": 500000, "steps": 244, "dtype": "bf16", "machine": {}, "train_seconds_total": 1.0}
    (folder / "student" / "final" / "distillation.json").write_text(json.dumps(info))
    (folder / "student" / "log.jsonl").write_text("".join(
        json.dumps({"step": 61 * i, "tokens": 1, "zero_shot_spearman": s}) + "\n" for i, s in enumerate(spearman_curve)))
    (folder / "embed-dev.json").write_text(json.dumps({"spearman": dev, "embedding_layer_spearman": 1.0,
                                                       "parameters": 1000}))


def test_the_probe_pick_reads_the_last_train_score_and_waits_for_every_probe(tmp_path):
    args = _args(tmp_path)
    work = tmp_path / "work"
    scores = {name: [40.0, 40.0 + i] for i, name in enumerate(pg.PROBES)}
    scores["probe-last-lr3e-5"] = [40.0, 70.0, 45.0]  # best on the way, not at the end
    names = list(pg.PROBES)
    for name in names[:-1]:
        _fake_run(work / name, scores[name], dev=99.0 if name == names[0] else 10.0)
    assert pg.collect(args)["probe"]["pick"] is None  # one probe still missing
    _fake_run(work / names[-1], scores[names[-1]])
    pick = pg.collect(args)["probe"]["pick"]
    assert pick["name"] == max(names, key=lambda n: scores[n][-1])  # not the dev-best names[0]


def test_committed_rows_survive_a_work_folder_that_lacks_them(tmp_path):
    args = _args(tmp_path)
    results = tmp_path / "results"
    results.mkdir()
    (results / "step0.json").write_text(json.dumps({"rows": {"rec-e128-svd": {"zero_shot": 43.8}},
                                                    "teacher_zero_shot": 88.11, "teacher_parameters": 109486464}))
    _fake_run(tmp_path / "work" / "step0" / "plain-1-e128", [], dev=70.0)
    step0 = pg.collect(args)["step0"]
    assert step0["rows"]["rec-e128-svd"]["zero_shot"] == 43.8
    assert step0["rows"]["plain-1-e128"]["zero_shot"] == 70.0
    assert step0["teacher_zero_shot"] == 88.11
    assert "rec-e128-svd" not in step0["pending"] and "rec-e312-svd" in step0["pending"]
    pg.keep_record(tmp_path / "work", results, "step0/plain-1-e128/distill")
    assert json.loads((results / "records" / "step0-plain-1-e128.json").read_text())["steps"] == 244


def test_a_pair_subset_spans_the_whole_split_evenly():
    from helpers import shared_path

    from minialbert.errors import MiniAlbertError
    from minialbert.inference.embeddings import ZeroShotSTSB

    glue = str(shared_path("data", "glue"))
    whole, subset = ZeroShotSTSB(glue, "train"), ZeroShotSTSB(glue, "train", max_pairs=1000)
    assert len(subset.pairs) == 1000 and len(subset.gold) == 1000
    assert subset.pairs[0] == whole.pairs[0] and subset.pairs[-1] == whole.pairs[-1]  # not a prefix: every genre
    assert set(subset.sentences) <= set(whole.sentences)
    with pytest.raises(MiniAlbertError, match="--max-pairs"):
        ZeroShotSTSB(glue, "train", max_pairs=1)


def test_the_page_tables_show_committed_rows_and_name_the_rest_pending(tmp_path, monkeypatch):
    monkeypatch.setattr(pg, "RESULTS_DIR", tmp_path)
    assert "pending" in pg.probe_table() and "Not measured yet" in pg.cost_table()
    (tmp_path / "step0.json").write_text(json.dumps({
        "teacher_zero_shot": 88.11, "teacher_parameters": 109486464,
        "rows": {"plain-1-e128": {"parameters": 12_000_000, "zero_shot": 76.79, "embedding_layer_zero_shot": 60.0}}}))
    table = pg.step0_table()
    assert "| 88.11 |" in table and "| 76.79 | 60.00 |" in table
    assert table.count("pending") == len(pg.STEP0) - 1


def _point(name, parameters, train, dev, kind="recursive"):
    return {"name": name, "kind": kind, "parameters": parameters, "zero_shot_train": train, "zero_shot": dev}


BAR = {"name": "minialbert-minilm", "zero_shot": 80.17}


def test_the_verdict_calls_a_gap_within_twice_the_seed_spread_none():
    doc = {"teacher_parameters": 100_000_000, "pending": [], "points": [
        _point("rec-e128", 13e6, 60.0, 61.0), _point("rec-e128-s43", 13e6, 59.0, 60.5),  # spread: train 1.0, dev 0.5
        _point("plain-1-e128", 11e6, 58.5, 59.8, "plain"),  # train gap 1.5 (< 2): none; dev gap 1.2 (> 1): recursive
        _point("rec-e312", 19e6, 50.0, 50.0), _point("plain-2-e128", 18e6, 60.0, 61.0, "plain")]}
    v = pg.verdict(doc, BAR)
    rows = {(c["recursive"], c["plain"]): c for c in v["comparisons"]}
    assert rows[("rec-e128", "plain-1-e128")]["zero_shot_train"]["winner"] == "none"
    assert rows[("rec-e128", "plain-1-e128")]["zero_shot"]["winner"] == "recursive"
    assert rows[("rec-e312", "plain-2-e128")]["zero_shot"] == {"difference": -11.0, "winner": "plain"}
    assert ("rel-e128-r32", "plain-2-e128") not in rows  # not run: not compared
    assert v["seed_spread"]["zero_shot"] == 0.5 and v["seed_spread"]["zero_shot_train"] == 1.0


def test_the_release_candidate_is_picked_on_train_pairs_and_judged_on_its_own_two_seeds():
    points = [_point("rec-e128", 13e6, 70.0, 81.0), _point("rec-e128-s43", 13e6, 71.0, 80.2),  # the twin: never
              _point("plain-1-e128", 11e6, 65.0, 85.0, "plain"),  # best on dev, not on train: not the candidate
              _point("rec-e312", 19e6, 75.0, 90.0)]  # above 15% of the teacher: never a candidate
    doc = {"teacher_parameters": 100_000_000, "pending": [], "points": points}
    release = pg.verdict(doc, BAR)["release"]
    assert release["candidate"] == "rec-e128" and release["seeds"] == ["rec-e128", "rec-e128-s43"]
    assert release["dev"] == pytest.approx(80.6) and release["margin"] == pytest.approx(0.43)
    assert release["needed"] == pytest.approx(1.6) and release["meets_rule"] is False  # above the bar, in the noise
    assert release["missed_by"] == pytest.approx(1.17)
    points[0]["zero_shot"], points[1]["zero_shot"] = 82.67, 82.17  # margin 2.25 > 2 x spread 0.5
    assert pg.verdict(doc, BAR)["release"]["meets_rule"] is True
    points[0]["zero_shot"], points[1]["zero_shot"] = 82.67, 81.67  # margin 2.0, exactly 2 x spread: not more
    release = pg.verdict(doc, BAR)["release"]
    assert release["margin"] == pytest.approx(release["needed"]) and release["meets_rule"] is False
    doc["pending"] = ["rel-e128-r32"]  # a pending point may still change the candidate: undecided
    assert pg.verdict(doc, BAR)["release"]["meets_rule"] is None


def test_a_candidate_with_one_seed_is_undecided_and_gets_its_second_seed_planned(tmp_path):
    points = [_point("rec-e128", 13e6, 60.0, 61.0), _point("rec-e128-s43", 13e6, 59.0, 60.0),
              _point("plain-1-e128", 11e6, 70.0, 90.0, "plain")]  # the candidate, one seed: no spread of its own
    doc = {"teacher_parameters": 100_000_000, "pending": [], "points": points}
    doc["verdict"] = pg.verdict(doc, BAR)
    release = doc["verdict"]["release"]
    assert release["candidate"] == "plain-1-e128" and release["needed"] is None and release["meets_rule"] is None
    pick = {"name": "probe-last-lr1e-4", "flags": ["--layer-map", pg.ALL_LAST]}
    jobs = {j.name: j.argv for j in pg.twin_jobs(_args(tmp_path), pick, doc)}
    argv = jobs["plain-1-e128-s43/distill"]
    assert argv[argv.index("--seed") + 1] == "43" and argv[argv.index("--layer-map") + 1] == "12"
    assert "plain-1-e128-s43/embed-dev" in jobs
    doc["pending"] = ["rec-e312"]
    assert pg.twin_jobs(_args(tmp_path), pick, doc) == []  # the candidate may still change
    points[2]["zero_shot_train"] = 50.0  # rec-e128 is the candidate: its twin is in the grid already
    doc["pending"], doc["verdict"] = [], pg.verdict(doc, BAR)
    assert pg.twin_jobs(_args(tmp_path), pick, doc) == []


def test_the_verdict_text_is_written_from_the_committed_file(tmp_path, monkeypatch):
    monkeypatch.setattr(pg, "RESULTS_DIR", tmp_path)
    assert pg.verdict_text().startswith("Pending")
    doc = {"teacher_parameters": 100_000_000, "pending": [], "points": [
        _point("rec-e128", 13e6, 60.0, 61.0), _point("rec-e128-s43", 13e6, 59.0, 60.0),
        _point("plain-1-e128", 11e6, 58.5, 58.0, "plain")]}
    doc["verdict"] = pg.verdict(doc, BAR)
    (tmp_path / "frontier.json").write_text(json.dumps(doc))
    text = pg.verdict_text()
    assert "| rec-e128 | plain-1-e128 |" in text and "+3.00 (recursive)" in text and "+1.50 (none)" in text
    assert "dev 60.50 (mean of rec-e128 and rec-e128-s43), -19.67 against minialbert-minilm" in text
    assert "misses the rule by 21.67" in text and "Provisional" not in text


def test_speeds_come_from_one_compare_run_and_a_missing_point_is_timed_at_step_0(tmp_path):
    """common.time_students on real folders: one trained point, one built at step 0 by its distill
    command, the teacher (here a tiny folder) beside them in the same `bench embed --compare` run."""
    from helpers import require, save_tiny_student, shared_path

    from scripts.studies import common

    glue = shared_path("data", "glue")
    require(glue.is_dir(), "needs ../shared/data/glue")
    work = tmp_path / "work"
    trained = save_tiny_student(tmp_path / "trained")
    teacher = save_tiny_student(tmp_path / "teacher")
    step0 = ["distill", "--teacher", "minilm", "--corpus", "wiki-offline", "--max-docs", "20", "--max-steps", "0",
             "--iterations", "1", "--max-length", "32", "--out", "-"]
    points = {"a": (trained, step0), "b": (work / "b" / "student" / "final", step0)}
    timed = common.time_students(work, points, teacher, str(glue), threads=1, max_pairs=10)
    assert timed is not None and timed["timed_at_step_0"] == ["b"]
    assert set(timed["points"]) == {"a", "b"} and all(v > 0 for v in timed["points"].values()) and timed["teacher"] > 0
    assert (work / "speed" / "b" / "final" / "config.json").is_file()


def test_a_resumed_probe_counts_each_step_once_with_the_score_of_the_run_that_went_on(tmp_path):
    folder = tmp_path / "work" / "probe-last-lr1e-4"
    _fake_run(folder, [40.0, 47.0])
    with (folder / "student" / "log.jsonl").open("a") as log:  # cut after step 61, resumed from step 50
        log.write(json.dumps({"step": 61, "tokens": 2, "zero_shot_spearman": 48.0}) + "\n")
    curve = pg.probe_curve(tmp_path / "work", "probe-last-lr1e-4")
    assert [(r["step"], r["zero_shot_spearman"]) for r in curve] == [(0, 40.0), (61, 48.0)]
