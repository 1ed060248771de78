"""Errors that carry a message meant for the person running Q2C, not a traceback."""


class Q2CError(Exception):
    """A failure the user can act on; its message says what went wrong and what to do."""
