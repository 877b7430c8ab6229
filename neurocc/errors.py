"""Errors a user can fix: the command line prints their message on one line and exits with code 2."""


class NeuroccError(Exception):
    """Bad input or usage (a malformed model or data file, an unsupported op, a bad option)."""


class UnsupportedModelError(NeuroccError):
    """The model uses an op or a pattern neurocc cannot convert; ``problems`` lists every blocking node
    the import found as (node, op type, why)."""

    def __init__(self, message: str, problems: tuple = ()):
        super().__init__(message)
        self.problems = list(problems)
