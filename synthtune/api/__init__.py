"""synthtune from Python: every ``synthtune`` command as a typed function that returns data (docs/api.md).

The Lightning runs (:func:`fit`, :func:`validate`, :func:`test`, :func:`predict`, :func:`generate`) are parsed and
run by the same parser and CLI class as ``synthtune fit`` (a config file plus dotted-key overrides, the same checks,
run folder, progress bar and hidden warnings). The data steps (:func:`curate`, :func:`decontaminate`,
:func:`score`, :func:`filter`, :func:`select`, :func:`evaluate`, :func:`export`, :func:`export_prompt`) read and
write the same files as their commands and return their reports; the commands print what these return.
"""

from synthtune.api.generate import generate
from synthtune.api.runs import Run, compose, fit, predict, run, test, validate

__all__ = ["Run", "compose", "fit", "generate", "predict", "run", "test", "validate"]
