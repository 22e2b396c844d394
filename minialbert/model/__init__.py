from .configuration_minialbert import PRESETS, MiniAlbertConfig, MiniAlbertConfigError, preset_config
from .modeling_minialbert import (
    BottleneckAdapter,
    MiniAlbertAdapters,
    MiniAlbertForMaskedLM,
    MiniAlbertForQuestionAnswering,
    MiniAlbertForSequenceClassification,
    MiniAlbertForTokenClassification,
    MiniAlbertModel,
    MiniAlbertPreTrainedModel,
)
from .summary import adapter_parameter_count, parameter_breakdown
from .modeling_bi_encoder import BiEncoderForSequenceClassification, is_bi_encoder, load_bi_encoder

from .. import register_auto_classes

register_auto_classes()  # the Auto classes know `minialbert` wherever the model classes are loaded
