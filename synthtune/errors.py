"""User-facing errors.

A :class:`SynthtuneError` is bad input, not a bug: the CLI prints its message as one line
(``error: ...``) and exits with status 2 instead of showing a traceback. Every message names the
problem and the fix.
"""


class SynthtuneError(Exception):
    """Bad input or a bad state that the user can fix; printed as one line by the CLI."""


class NonFiniteLossError(SynthtuneError):
    """The training loss became NaN or inf; the run stops before that state is saved."""
