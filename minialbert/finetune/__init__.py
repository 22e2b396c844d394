"""Fine-tuning and evaluation: GLUE and biomedical NER, full and adapter tuning, grids, reports."""

from .adapter_files import load_adapter_model, save_adapter_task
from .glue import GLUE_TASKS, get_task, glue_metrics, load_glue
from .ner import load_ner, ner_metrics
from .runner import FinetuneOptions, run_finetune
