"""minialbert: distil BERT-like teachers into compact recursive MiniALBERT students.

Importing the package registers the `minialbert` model type with transformers' Auto classes, and
nothing else: every submodule imports this package first, so the registration is always in place,
and the fine-tuning stack loads only when it is used (`minialbert.load_adapter_model`).
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .model import (
    PRESETS,
    MiniAlbertConfig,
    MiniAlbertConfigError,
    MiniAlbertForMaskedLM,
    MiniAlbertForQuestionAnswering,
    MiniAlbertForSequenceClassification,
    MiniAlbertForTokenClassification,
    MiniAlbertModel,
    parameter_breakdown,
    preset_config,
)

__version__ = "0.1.0"

# The public names (docs/reference/api.md documents each; tests/test_docs_site.py checks it).
__all__ = ["MiniAlbertConfig", "MiniAlbertConfigError", "MiniAlbertModel", "MiniAlbertForMaskedLM",
           "MiniAlbertForSequenceClassification", "MiniAlbertForTokenClassification",
           "MiniAlbertForQuestionAnswering", "PRESETS", "preset_config", "parameter_breakdown",
           "load_adapter_model"]

AutoConfig.register("minialbert", MiniAlbertConfig, exist_ok=True)
for _auto, _cls in ((AutoModel, MiniAlbertModel), (AutoModelForMaskedLM, MiniAlbertForMaskedLM),
                    (AutoModelForSequenceClassification, MiniAlbertForSequenceClassification),
                    (AutoModelForTokenClassification, MiniAlbertForTokenClassification),
                    (AutoModelForQuestionAnswering, MiniAlbertForQuestionAnswering)):
    _auto.register(MiniAlbertConfig, _cls, exist_ok=True)


def __getattr__(name):  # PEP 562: keep `import minialbert` light
    if name == "load_adapter_model":
        from .model.adapters import load_adapter_model

        return load_adapter_model
    raise AttributeError(f"module 'minialbert' has no attribute {name!r}")
