"""minialbert: distil BERT-like teachers into compact recursive MiniALBERT students.

Importing the package registers the `minialbert` model type with transformers' Auto classes.
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

from .finetune.adapter_files import load_adapter_model

__version__ = "0.1.0"

AutoConfig.register("minialbert", MiniAlbertConfig, exist_ok=True)
for _auto, _cls in ((AutoModel, MiniAlbertModel), (AutoModelForMaskedLM, MiniAlbertForMaskedLM),
                    (AutoModelForSequenceClassification, MiniAlbertForSequenceClassification),
                    (AutoModelForTokenClassification, MiniAlbertForTokenClassification),
                    (AutoModelForQuestionAnswering, MiniAlbertForQuestionAnswering)):
    _auto.register(MiniAlbertConfig, _cls, exist_ok=True)
