"""Errors that carry a message meant for the person running Q2C, not a traceback."""


class Q2CError(Exception):
    """A failure the user can act on; its message says what went wrong and what to do."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (of the driver's error when wrapped)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
