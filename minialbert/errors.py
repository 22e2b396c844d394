class MiniAlbertError(ValueError):
    """A problem with the user's input (file, field or option). The CLI prints the message
    and exits non-zero without a traceback."""


def require(condition: bool, message: str) -> None:
    """Raise MiniAlbertError(message) unless condition holds (argument checks read as one line each)."""
    if not condition:
        raise MiniAlbertError(message)
