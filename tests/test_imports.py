"""The package layout: every module imports on its own (no import cycles), and importing the package
changes nothing process-wide (csv limits, environment variables) and loads no fine-tuning stack."""

import ast
import subprocess
import sys
from pathlib import Path

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

    from minialbert.data.glue import get_task, read_tsv

    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    before = csv.field_size_limit()
    assert read_tsv(get_task("sst2"), tmp_path / "dev.tsv").labels == [1]
    assert csv.field_size_limit() == before


# The layers, from the command line down to the model and the small helpers beneath it: a module may
# import its own layer or any layer below it, never one above.
LAYERS = ["__main__", "cli", "analysis", "finetune", "taskdistill", "distillation", "inference", "data",
          "model_card", "runtime", "model", "resumable", "checkpoints", "packaged", "fingerprint", "options", "compat",
          "hf_utils", "allocator", "records", "errors"]


def _package_modules(root):
    """The package's own modules: not the modeling code copied beside a released student's weights
    (minialbert/released/NAME/*.py is package data, for loading with trust_remote_code)."""
    return sorted(p for p in root.rglob("*.py") if p.relative_to(root).parts[0] != "released")


def _package_imports():
    """{module: {imported package modules}} for every module of the package, reading every import
    statement, those inside functions included (a function-local import is still a dependency)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "minialbert"
    graph = {}
    for path in _package_modules(root):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("minialbert")}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                if module.startswith("minialbert"):
                    targets.add(module)
        graph[name] = targets - {name}
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else -1  # minialbert itself: above everything


def test_no_import_cycle_function_local_imports_included():
    graph = _package_imports()
    state = {}

    def visit(module, path):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", "import cycle: " + " -> ".join(path + [module])
        state[module] = "open"
        for target in graph.get(module, ()):
            if target in graph:
                visit(target, path + [module])
        state[module] = "done"

    for module in graph:
        visit(module, [])


def test_imports_run_one_way_from_the_command_line_down_to_the_model():
    climbing = [f"{m} -> {t}" for m, targets in _package_imports().items() for t in targets
                if m != "minialbert" and t != "minialbert" and _layer(t) < _layer(m)]
    assert not climbing, "imports that climb back up the layers: " + "; ".join(sorted(climbing))


def test_no_package_module_outside_model_is_longer_than_450_lines():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "minialbert"
    long = {str(p.relative_to(root)): n for p in _package_modules(root)
            if "model" not in p.relative_to(root).parts[:1] and (n := len(p.read_text().splitlines())) > 450}
    assert not long, f"modules over 450 lines: {long}"


# --- names, configs and tasks are resolved once, by the plan builder --------------------------------

RESOLVERS = {"resolve_model_name", "resolve_teacher_folder", "read_config", "get_task", "from_pretrained"}


def _resolving_calls(path: Path) -> list[str]:
    """'function: call' for each call in `path` that resolves a model name, reads a configuration
    (AutoConfig.from_pretrained) or looks up a task."""
    tree = ast.parse(path.read_text())
    found = []
    for func in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        for call in [n for n in ast.walk(func) if isinstance(n, ast.Call)]:
            f = call.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            owner = getattr(f.value, "id", None) if isinstance(f, ast.Attribute) else None
            if name in RESOLVERS and (name != "from_pretrained" or owner == "AutoConfig"):
                found.append(f"{func.name}: {owner + '.' if owner else ''}{name}")
    return found


def test_finetune_resolves_model_names_configs_and_tasks_only_in_its_plan():
    """`minialbert finetune` asks each question once (finetune/plan.py) and hands the answers down:
    no module below the plan resolves a model name, reads a config or looks a task up again. The
    teacher's own checks (taskdistill/teacher.py) are what the plan calls; `bench finetune` is
    another command with its own inputs."""
    root = Path(__file__).resolve().parents[1] / "minialbert"
    allowed = {"finetune/plan.py", "finetune/bench.py"}
    own = {"taskdistill/teacher.py": {"resolve_teacher_folder: resolve_model_name",
                                      "check_teacher: AutoConfig.from_pretrained"}}
    stray = {}
    for path in sorted([*(root / "finetune").glob("*.py"), *(root / "taskdistill").glob("*.py")]):
        rel = path.relative_to(root).as_posix()
        if rel in allowed:
            continue
        calls = [c for c in _resolving_calls(path) if c not in own.get(rel, set())]
        if calls:
            stray[rel] = calls
    assert not stray, stray


def test_the_teacher_is_checked_once_by_the_plan_never_again_per_run():
    """check_teacher reads the teacher's configuration (the whitelist above lets it): the plan calls
    it, once, and hands its answer (CheckedTeacher) down; no function below the plan calls it again
    (load_task_teacher did, once per run and again for the transfer set)."""
    root = Path(__file__).resolve().parents[1] / "minialbert"
    callers = []
    for path in sorted([*(root / "finetune").glob("*.py"), *(root / "taskdistill").glob("*.py")]):
        tree = ast.parse(path.read_text())
        for func in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for call in [n for n in ast.walk(func) if isinstance(n, ast.Call)]:
                f = call.func
                if (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)) == "check_teacher":
                    callers.append(f"{path.relative_to(root).as_posix()}: {func.name}")
    assert callers == ["finetune/plan.py: build_plan"], callers


AVAILABILITY_CHECK_FIRST = r"""
import importlib.util, sys
import minialbert
assert "transformers" not in sys.modules  # import minialbert stays light
# An availability check before the real import (accelerate's is_transformers_available() does this):
# it asks for transformers' spec and never executes it.
assert importlib.util.find_spec("transformers") is not None
from transformers import AutoConfig, AutoModel
config = AutoConfig.for_model("minialbert")
from minialbert.packaged import released_student
model = AutoModel.from_pretrained(released_student("minialbert-minilm"))  # no trust_remote_code
print(type(config).__name__, type(model).__module__)
"""


def test_an_availability_check_before_the_import_of_transformers_still_registers_the_auto_classes():
    """The hook once removed itself on the first find_spec('transformers'), an availability check's
    included; the real import then got an unpatched spec and 'minialbert' stayed unknown to Auto*."""
    result = subprocess.run([sys.executable, "-c", AVAILABILITY_CHECK_FIRST], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["MiniAlbertConfig", "minialbert.model.modeling_minialbert"]
