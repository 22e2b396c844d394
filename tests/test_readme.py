"""The README's quickstart runs as written: its command-line block (each command with tiny settings
appended, and --data-dir pointed at a tiny GLUE sample made here where the README uses the hub or a
user's folder) and its three Python blocks (the released student after `import minialbert`, the same
folder with trust_remote_code=True where minialbert cannot be imported, distillation from a script
with a tiny recipe). argparse takes the last value of a repeated flag, so what is appended wins."""

import os
import random
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

TINY_DISTILL = ["--max-steps", "2", "--batch-size", "2", "--max-length", "32", "--stride", "16", "--max-docs", "50",
                "--warmup-steps", "0", "--logging-steps", "1"]
# What the test appends to each quickstart command; a command the README adds without an entry here
# fails the test (so the README's quickstart never grows an untested command).
OVERRIDES = {
    "distill": TINY_DISTILL,
    "finetune": ["--data-dir", "{glue}", "--max-steps", "2", "--batch-size", "4", "--max-length", "32"],
    "bench embed": ["--data-dir", "{glue}", "--max-length", "32"],
    "export": [],
}


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def tiny_glue(root: Path) -> Path:
    """RTE and STS-B in the official GLUE layout, 16/8/8 rows of made-up sentences."""
    rnd = random.Random(0)
    words = "cat dog man woman child plays runs eats guitar ball food park house car red blue".split()

    def sentence():
        return " ".join(rnd.choice(words) for _ in range(6)).capitalize() + "."

    for split, n in (("train", 16), ("dev", 8), ("test", 8)):
        labelled = split != "test"
        rte = ["index\tsentence1\tsentence2" + ("\tlabel" if labelled else "")]
        stsb = ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2" + ("\tscore" if labelled else "")]
        for i in range(n):
            rte.append(f"{i}\t{sentence()}\t{sentence()}" + (f"\t{('not_entailment', 'entailment')[i % 2]}" if labelled else ""))
            stsb.append(f"{i}\tmain\tx\t2012\t{i}\tnone\tnone\t{sentence()}\t{sentence()}" + (f"\t{i % 6}.000" if labelled else ""))
        for task, rows in (("RTE", rte), ("STS-B", stsb)):
            (root / task).mkdir(parents=True, exist_ok=True)
            (root / task / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root


def quickstart_commands() -> list[list[str]]:
    (block,) = blocks(section("Quickstart: the command line"), "bash")
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line]


def test_the_command_line_quickstart_runs_as_written(tmp_path, monkeypatch):
    from minialbert.cli import main

    glue = tiny_glue(tmp_path / "tiny-glue")
    monkeypatch.chdir(tmp_path)
    commands = quickstart_commands()
    assert [c[0] for c in commands] == ["minialbert"] * len(commands)
    names = [" ".join(c[1:3]) if c[1] == "bench" else c[1] for c in commands]
    assert {"distill", "finetune", "bench embed", "export"} <= set(names)
    for argv, name in zip(commands, names):
        assert name in OVERRIDES, f"the README's quickstart runs `{name}`, which this test does not know how to make tiny"
        extra = [a.format(glue=glue) for a in OVERRIDES[name]]
        assert main(argv[1:] + extra) == 0, argv
    assert (tmp_path / "runs/student/final/config.json").is_file()
    assert (tmp_path / "runs/rte/results.json").is_file()
    assert (tmp_path / "runs/student-st/modules.json").is_file()
    assert (tmp_path / "runs/student.onnx").is_file()


def test_the_python_quickstart_runs_as_written(tmp_path, monkeypatch, capsys):
    with_package, without_package, from_script = blocks(section("Quickstart: Python"), "python")
    monkeypatch.chdir(tmp_path)

    exec(compile(with_package, "README: with minialbert", "exec"), {"__name__": "readme"})
    assert "tensor([[" in capsys.readouterr().out  # the similarity of the two sentences

    tiny = '{"max_steps": 2, "batch_size": 2, "max_length": 32, "stride": 16, "max_docs": 50, "warmup_steps": 0}'
    assert '{"max_steps": 50}' in from_script
    exec(compile(from_script.replace('{"max_steps": 50}', tiny), "README: distil from a script", "exec"),
         {"__name__": "readme"})
    assert (tmp_path / "runs/from-script/final/config.json").is_file()
    printed = capsys.readouterr().out.splitlines()  # the Trainer logs too; the snippet prints steps, losses
    assert any(line.startswith("2 {") for line in printed), printed[-3:]

    # Without minialbert: a copy of the released folder, in a process where `import minialbert` fails.
    shutil.copytree(REPO / "minialbert/released/minialbert-minilm", tmp_path / "minialbert-minilm")
    script = 'import sys\nsys.modules["minialbert"] = None\n' + without_package
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("(1, 384)")


def test_without_trust_remote_code_the_folder_is_refused_as_the_readme_says(tmp_path):
    """The README says that, minialbert not imported, the folder needs trust_remote_code=True."""
    assert "installed but not imported it is the same: `trust_remote_code=True` or `import minialbert`" in README
    shutil.copytree(REPO / "minialbert/released/minialbert-minilm", tmp_path / "minialbert-minilm")
    script = 'from transformers import AutoModel\nAutoModel.from_pretrained("minialbert-minilm")\n'
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode != 0 and "trust_remote_code" in result.stderr
