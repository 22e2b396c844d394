"""Inference: multi-task serving on one frozen base, and the inference benchmark.

`MultiTaskModel` loads on first access (PEP 562): the benchmark options of this package are read
without torch by the command line."""


def __getattr__(name):
    if name == "MultiTaskModel":
        from .serving import MultiTaskModel

        return MultiTaskModel
    raise AttributeError(f"module 'minialbert.inference' has no attribute {name!r}")
