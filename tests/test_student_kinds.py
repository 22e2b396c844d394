"""Students beyond the strict recursive one (docs/method.md, "Student kinds"): plain students of k
unique layers copied from the teacher, relaxed recursion (per-iteration low-rank deltas started from
the truncated SVD of each mapped teacher layer minus the shared layer), bigger adapters, all built by
the same `distill` command."""

import json

import pytest
import torch
from transformers import AutoTokenizer

import minialbert  # noqa: F401
from minialbert.cli import main
from minialbert.distillation.recipe import DistillRecipe
from minialbert.distillation.student import build_student, resolve_alignment, student_config
from minialbert.distillation.teacher import load_teacher
from minialbert.model.initialization import _BERT_LAYER_MAP
from minialbert.model.modeling_minialbert import relaxed_maps
from minialbert.packaged import packaged_teacher_path


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("minilm", attentions=False)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(packaged_teacher_path())


def student(teacher, tokenizer, **fields):
    recipe = DistillRecipe(**{"embedding_size": 128, "iterations": 3, "shared_layer_init": "6", **fields})
    config = student_config(recipe, teacher.config)
    _, _, layer_map = resolve_alignment(recipe, teacher, config)
    model, info, inherited = build_student(recipe, teacher, tokenizer, config, layer_map)
    return model.eval(), info, inherited


def test_a_rank_zero_student_is_todays_student_exactly(teacher, tokenizer):
    today, _, _ = student(teacher, tokenizer, layer_map=[6, 6, 6])
    zero, _, _ = student(teacher, tokenizer, layer_map=[6, 6, 6], relaxation_rank=0)
    assert zero.config.relaxation_rank == 0 and zero.base_model.encoder.deltas is None
    assert today.state_dict().keys() == zero.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(today.state_dict().values(), zero.state_dict().values()))
    # deltas towards the layer the shared layer already is are zero, and change nothing
    relaxed, info, _ = student(teacher, tokenizer, layer_map=[6, 6, 6], relaxation_rank=8)
    assert info["relaxation_energy_kept"] == [1.0, 1.0, 1.0]
    assert all(torch.count_nonzero(p) == 0 for n, p in relaxed.named_parameters() if ".deltas." in n and n.endswith("up"))
    ids = tokenizer(["a relaxed student starts where today's does"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(relaxed.minialbert(**ids).last_hidden_state, today.minialbert(**ids).last_hidden_state)


def test_full_rank_deltas_rebuild_each_mapped_teacher_layer(teacher, tokenizer):
    relaxed, info, inherited = student(teacher, tokenizer, layer_map=[2, 4, 6], shared_layer_init="average",
                                       relaxation_rank=384)
    assert info["shared_layer_init"] == [2, 4, 6] and "minialbert.encoder.deltas" in inherited
    encoder = relaxed.base_model.encoder
    for i, layer in enumerate([2, 4, 6]):
        for name, (path, _, _) in relaxed_maps(relaxed.config).items():
            delta = encoder.deltas[i].maps[name]
            effective = encoder.layer.get_submodule(path).weight + delta.up @ delta.down
            target = teacher.model.base_model.encoder.layer[layer - 1].get_submodule(_BERT_LAYER_MAP[path]).weight
            torch.testing.assert_close(effective, target, atol=2e-5, rtol=1e-4)
    low, info, _ = student(teacher, tokenizer, layer_map=[2, 4, 6], shared_layer_init="average", relaxation_rank=32)
    assert all(0 < kept < 1 for kept in info["relaxation_energy_kept"])


def test_a_plain_student_of_every_teacher_layer_at_full_width_is_the_teacher(teacher, tokenizer):
    plain, info, _ = student(teacher, tokenizer, embedding_size=384, iterations=6, layer_groups=6, adapters=False,
                             layer_map=[1, 2, 3, 4, 5, 6])
    assert info["layer_groups_init"] == [[1], [2], [3], [4], [5], [6]]
    ids = tokenizer(["layer dropping keeps whole teacher layers", "a second, longer sentence to pad against"],
                    padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = plain.minialbert(**ids).last_hidden_state
        theirs = teacher.model.base_model(**ids).last_hidden_state
    real = ids["attention_mask"].bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-4, rtol=1e-4)


def test_plain_relaxed_and_bigger_adapter_students_distil_save_and_load(tmp_path, capsys, monkeypatch):
    from transformers import AutoModel

    monkeypatch.setenv("MINIALBERT_CACHE", str(tmp_path / "cache"))
    fast = ["--max-length", "64", "--stride", "32", "--batch-size", "4", "--max-docs", "50", "--max-steps", "2",
            "--dtype", "fp32", "--embedding-size", "128", "--shared-layer-init", "average"]
    kinds = {"plain": ["--iterations", "2", "--layer-groups", "2", "--no-adapters", "--layer-map", "3,6"],
             "relaxed": ["--iterations", "3", "--layer-map", "2,4,6", "--relaxation-rank", "8"],
             "adapters": ["--iterations", "3", "--adapter-reduction-factor", "4"]}
    sizes = {}
    for name, flags in kinds.items():
        out = tmp_path / name
        assert main(["distill", *fast, *flags, "--out", str(out)]) == 0
        saved = json.loads((out / "final" / "distillation.json").read_text())["student"]
        model = AutoModel.from_pretrained(out / "final")
        assert saved["base_parameters"] == sum(p.numel() for p in model.parameters())
        assert saved["fp16_megabytes"] == pytest.approx(2 * saved["base_parameters"] / 1e6, abs=0.01)
        sizes[name] = saved
    assert sizes["plain"]["layer_groups"] == 2 and sizes["relaxed"]["relaxation_rank"] == 8
    assert sizes["adapters"]["adapter_reduction_factor"] == 4
    capsys.readouterr()
    assert main(["info", str(tmp_path / "relaxed" / "final")]) == 0
    assert "relaxation deltas" in capsys.readouterr().out


def test_relaxation_without_a_teacher_shared_layer_is_refused(tmp_path, capsys):
    assert main(["distill", "--relaxation-rank", "8", "--shared-layer-init", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--relaxation-rank starts each iteration's deltas" in capsys.readouterr().err
