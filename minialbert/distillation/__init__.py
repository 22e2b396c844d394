"""Layer-to-layer distillation: losses (public API), teacher handling, Trainer integration."""

from .losses import (ALIGNMENT_MODES, LossWeights, attention_loss, distillation_losses, embedding_loss, hidden_loss,
                     mlm_loss, output_loss, sentence_loss, uniform_layer_map)
