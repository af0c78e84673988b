"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class PaddyError(Exception):
    """A problem the user can fix (bad input, missing data, no credentials)."""
