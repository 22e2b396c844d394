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

from helpers import tiny_config


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
    # deltas towards the layer the shared layer already is start as LoRA's: zero deltas that change nothing
    relaxed, info, inherited = student(teacher, tokenizer, layer_map=[6, 6, 6], relaxation_rank=8)
    assert info["relaxation_energy_kept"] == [1.0, 1.0, 1.0] and info["relaxation_start"] == ["lora"] * 3
    assert not any(m.startswith("minialbert.encoder.deltas") for m in inherited)
    ids = tokenizer(["a relaxed student starts where today's does"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(relaxed.minialbert(**ids).last_hidden_state, today.minialbert(**ids).last_hidden_state)


def test_deltas_on_the_shared_layers_own_teacher_layer_train(teacher, tokenizer):
    """Map 6,6,6 with the shared layer from layer 6 (the released recipe's): the SVD split of a zero
    difference would leave both factors zero with zero gradients forever; the LoRA start gives `up`
    a gradient at step 1 and `down` one at step 2."""
    relaxed, _, _ = student(teacher, tokenizer, layer_map=[6, 6, 6], relaxation_rank=8)
    relaxed.train()
    deltas = [m for m in relaxed.modules() if type(m).__name__ == "LowRankDelta"]
    assert len(deltas) == 3 * 6
    start = {n: p.detach().clone() for n, p in relaxed.named_parameters() if ".deltas." in n}
    optimizer = torch.optim.SGD([p for n, p in relaxed.named_parameters() if ".deltas." in n], lr=1e-2)
    ids = tokenizer(["the shared layer is the teacher's sixth", "so each delta starts at zero"],
                    padding=True, return_tensors="pt")
    labels = ids["input_ids"].masked_fill(ids["attention_mask"] == 0, -100)
    for step in (1, 2):
        optimizer.zero_grad()
        relaxed(**ids, labels=labels).loss.backward()
        if step == 1:
            assert all(d.up.grad.abs().max() > 0 for d in deltas)
        else:
            assert all(d.down.grad.abs().max() > 0 for d in deltas)
        optimizer.step()
    moved = {n: not torch.equal(p, start[n]) for n, p in relaxed.named_parameters() if ".deltas." in n}
    assert len(moved) == 2 * len(deltas) and all(moved.values())


def test_full_rank_deltas_rebuild_each_mapped_teacher_layer(teacher, tokenizer):
    relaxed, info, inherited = student(teacher, tokenizer, layer_map=[2, 4, 6], shared_layer_init="average",
                                       relaxation_rank=384)
    assert info["shared_layer_init"] == [2, 4, 6] and info["relaxation_start"] == ["svd"] * 3
    assert {f"minialbert.encoder.deltas.{i}" for i in range(3)} <= set(inherited)
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
    from huggingface_hub import ModelCard
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
    cards = {name: ModelCard.load(tmp_path / name / "final" / "README.md") for name in kinds}
    assert "A plain 2-layer MiniALBERT student (2 unique layers" in cards["plain"].text
    assert "A relaxed recursive MiniALBERT student (one shared layer plus rank-8" in cards["relaxed"].text
    assert "A recursive MiniALBERT student (one shared layer applied 3 times, hidden 384" in cards["adapters"].text
    assert "recursive-transformer" in cards["adapters"].data.tags
    assert "relaxed-recursive-transformer" in cards["relaxed"].data.tags
    for name in ("plain", "relaxed"):
        assert "recursive-transformer" not in cards[name].data.tags and "applied" not in cards[name].text, name
    capsys.readouterr()
    assert main(["info", str(tmp_path / "relaxed" / "final")]) == 0
    assert "relaxation deltas" in capsys.readouterr().out


def test_lora_started_deltas_train_at_the_full_rate_and_svd_started_ones_at_the_inherited_rate(tmp_path, monkeypatch):
    """Map 3,6,6 with the shared layer from layer 6 and --inherited-lr-scale 0 (the teacher's parts
    frozen): iteration 0's deltas come from the teacher (SVD) and stay put; iterations 1 and 2 start
    as LoRA's and both of their factors train, at the full rate."""
    from safetensors.torch import load_file

    monkeypatch.setenv("MINIALBERT_CACHE", str(tmp_path / "cache"))
    fast = ["--max-length", "64", "--stride", "32", "--batch-size", "4", "--max-docs", "50", "--dtype", "fp32",
            "--embedding-size", "128", "--iterations", "3", "--layer-map", "3,6,6", "--shared-layer-init", "6",
            "--relaxation-rank", "8", "--inherited-lr-scale", "0", "--warmup-steps", "0"]
    for steps in (0, 2):
        assert main(["distill", *fast, "--max-steps", str(steps), "--out", str(tmp_path / f"s{steps}")]) == 0
    record = json.loads((tmp_path / "s2" / "final" / "distillation.json").read_text())
    assert record["initialisation"]["relaxation_start"] == ["svd", "lora", "lora"]
    before, after = (load_file(tmp_path / f"s{steps}" / "final" / "model.safetensors") for steps in (0, 2))
    deltas = [k for k in before if ".deltas." in k]
    assert len(deltas) == 3 * 6 * 2
    for key in deltas:
        assert torch.equal(before[key], after[key]) == (".deltas.0." in key), key
    assert all(torch.equal(before[k], after[k]) for k in before if ".encoder.layer." in k)


@pytest.mark.parametrize("fields,kind,tags", [
    ({}, ("recursive MiniALBERT student", "one shared layer applied 3 times"), ["recursive-transformer"]),
    ({"num_hidden_groups": 3}, ("plain 3-layer MiniALBERT student", "3 unique layers, none shared"), []),
    ({"relaxation_rank": 8}, ("relaxed recursive MiniALBERT student", "one shared layer plus rank-8 per-iteration "
                              "deltas on its linear maps, over 3 iterations"), ["relaxed-recursive-transformer"]),
    ({"num_hidden_layers": 6, "num_hidden_groups": 2},
     ("recursive MiniALBERT student", "2 layers (ALBERT's layer groups) shared over 6 iterations"),
     ["recursive-transformer"]),
])
def test_the_model_card_says_what_kind_of_student_it_is(fields, kind, tags):
    """Cards of distilled and released students (distillation/trainer.py, inference/export.py) describe
    the student by its kind; only students that apply a layer more than once are tagged recursive."""
    from minialbert.model_card import student_kind, student_tags

    config = tiny_config(**fields)
    assert student_kind(config) == kind and student_tags(config) == tags


def test_relaxation_without_a_teacher_shared_layer_is_refused(tmp_path, capsys):
    assert main(["distill", "--relaxation-rank", "8", "--shared-layer-init", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--relaxation-rank starts each iteration's deltas" in capsys.readouterr().err
