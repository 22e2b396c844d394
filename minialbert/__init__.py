"""minialbert: distil BERT-like teachers into compact recursive MiniALBERT students.

Importing the package registers the `minialbert` model type with transformers' Auto classes, and
nothing else. The registration happens as soon as transformers itself is loaded: at once when it
already is, else right after its first import (a post-import hook), so `import minialbert` stays
free of torch and transformers and `minialbert --help` answers at once. The model classes load on
first use (`minialbert.MiniAlbertModel`), the fine-tuning stack likewise (`minialbert.load_adapter_model`).
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# The public names (docs/reference/api.md documents each; tests/test_docs_site.py checks it).
__all__ = ["MiniAlbertConfig", "MiniAlbertConfigError", "MiniAlbertModel", "MiniAlbertForMaskedLM",
           "MiniAlbertForSequenceClassification", "MiniAlbertForTokenClassification",
           "MiniAlbertForQuestionAnswering", "PRESETS", "preset_config", "parameter_breakdown",
           "load_adapter_model"]

# Loaded on first access (PEP 562): each of these imports torch and transformers.
_MODEL_NAMES = ("PRESETS", "MiniAlbertConfig", "MiniAlbertConfigError", "MiniAlbertForMaskedLM",
                "MiniAlbertForQuestionAnswering", "MiniAlbertForSequenceClassification",
                "MiniAlbertForTokenClassification", "MiniAlbertModel", "parameter_breakdown", "preset_config")


def register_auto_classes() -> None:
    """Register MiniAlbertConfig and its models with transformers' Auto classes (idempotent).
    Called by minialbert.model once its classes exist."""
    from transformers import (AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForQuestionAnswering,
                              AutoModelForSequenceClassification, AutoModelForTokenClassification)

    from . import model

    AutoConfig.register("minialbert", model.MiniAlbertConfig, exist_ok=True)
    for auto, cls in ((AutoModel, model.MiniAlbertModel), (AutoModelForMaskedLM, model.MiniAlbertForMaskedLM),
                      (AutoModelForSequenceClassification, model.MiniAlbertForSequenceClassification),
                      (AutoModelForTokenClassification, model.MiniAlbertForTokenClassification),
                      (AutoModelForQuestionAnswering, model.MiniAlbertForQuestionAnswering)):
        auto.register(model.MiniAlbertConfig, cls, exist_ok=True)


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """Runs the registration right after `transformers` is first imported, by whoever imports it.
    Why a hook and not an import here: transformers pulls in torch (seconds), and the CLI must parse
    its arguments (--help, a typo) before paying for either."""

    def find_spec(self, name, path=None, target=None):
        if name != "transformers":
            return None
        # The other finders' spec, asked directly (importlib.util.find_spec would ask this finder again).
        # This finder stays in sys.meta_path until a spec it returned is executed: a spec asked for only
        # to check availability (importlib.util.find_spec, accelerate's is_transformers_available) is
        # never executed, and the real import must still get a patched one.
        spec = next((found for finder in sys.meta_path if finder is not self and hasattr(finder, "find_spec")
                     for found in [finder.find_spec(name, path, target)] if found is not None), None)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            if self in sys.meta_path:  # transformers is loaded: the hook's work is done
                sys.meta_path.remove(self)
            # minialbert.model already importing (it imports transformers itself) registers at its end.
            if "minialbert.model" not in sys.modules:
                importlib.import_module("minialbert.model")

        spec.loader.exec_module = exec_then_register
        return spec


if "transformers" in sys.modules:
    importlib.import_module("minialbert.model")  # registers
elif not any(isinstance(f, _RegisterAfterTransformers) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTransformers())


def __getattr__(name):  # PEP 562: keep `import minialbert` light
    if name in _MODEL_NAMES:
        from . import model

        return getattr(model, name)
    if name == "load_adapter_model":
        from .model.adapters import load_adapter_model

        return load_adapter_model
    raise AttributeError(f"module 'minialbert' has no attribute {name!r}")
