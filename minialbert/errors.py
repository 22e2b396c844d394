class MiniAlbertError(ValueError):
    """A problem with the user's input (file, field or option). The CLI prints the message
    and exits non-zero without a traceback."""
