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
