"""The package layout: every module imports on its own (no import cycles), and importing the package
changes nothing process-wide (csv limits, environment variables) and loads no fine-tuning stack."""

import subprocess
import sys

CHECK = r"""
import csv, importlib, os, pkgutil, sys
import torch, transformers, torch._inductor, sklearn  # the libraries' own import-time effects are not ours
limit, env = csv.field_size_limit(), dict(os.environ)
import minialbert
assert "minialbert.finetune" not in sys.modules, "import minialbert loaded the fine-tuning stack"
assert callable(minialbert.load_adapter_model)  # still reachable, loaded on first use
names = [m.name for m in pkgutil.walk_packages(minialbert.__path__, "minialbert.") if m.name != "minialbert.__main__"]
for name in names:  # each module imported first, in a package with nothing else loaded: a cycle fails here
    for loaded in [m for m in sys.modules if m.startswith("minialbert.")]:
        del sys.modules[loaded]
    importlib.import_module(name)
for name in names:
    importlib.import_module(name)
assert csv.field_size_limit() == limit, "an import changed csv.field_size_limit"
changed = {k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)}
assert not changed, f"imports changed environment variables {sorted(changed)}"
print(len(names))
"""


def test_every_module_imports_alone_without_global_side_effects():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) >= 40  # the walk really found the package's modules


def test_reading_glue_leaves_the_csv_limit_as_it_was(tmp_path):
    import csv

    from minialbert.finetune.glue import get_task, read_tsv

    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    before = csv.field_size_limit()
    assert read_tsv(get_task("sst2"), tmp_path / "dev.tsv").labels == [1]
    assert csv.field_size_limit() == before
