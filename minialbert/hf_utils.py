"""Small helpers around transformers."""

import contextlib


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' loading report (missing/unexpected key tables) where we report what
    matters ourselves, in one line."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
