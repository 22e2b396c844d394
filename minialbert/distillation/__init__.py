"""Layer-to-layer distillation: losses (public API), teacher handling, Trainer integration.

The loss functions load on first access (PEP 562), so that the recipe and the options of this
package can be read without torch (the command line builds its parsers from them)."""

_LOSS_NAMES = ("ALIGNMENT_MODES", "LossWeights", "attention_loss", "distillation_losses", "embedding_loss",
               "hidden_loss", "mlm_loss", "output_loss", "sentence_loss", "uniform_layer_map")


def __getattr__(name):
    if name in _LOSS_NAMES:
        from . import losses

        return getattr(losses, name)
    raise AttributeError(f"module 'minialbert.distillation' has no attribute {name!r}")
