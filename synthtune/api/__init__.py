"""synthtune from Python: every ``synthtune`` command as a typed function that returns data (docs/api.md).

The Lightning runs (:func:`fit`, :func:`validate`, :func:`test`, :func:`predict`, :func:`generate`) are parsed and
run by the same parser and CLI class as ``synthtune fit`` (a config file plus dotted-key overrides, the same checks,
run folder, progress bar and hidden warnings). The data steps (:func:`curate`, :func:`decontaminate`,
:func:`score`, :func:`novelty`, :func:`filter`, :func:`select`, :func:`evaluate`, :func:`export`,
:func:`export_prompt`) read and write the same files as their commands and return their reports; each command
prints what its function returns.

The submodules keep the functions' own names (``synthtune.api.score.mauve``, ``synthtune.api.filter.filter_rows``);
as attributes of this package some of those names are the functions, so reach a submodule through
``sys.modules`` or ``from synthtune.api.score import ...``.
"""

from synthtune.api.curate import curate
from synthtune.api.decontaminate import decontaminate
from synthtune.api.export import export
from synthtune.api.export_prompt import export_prompt
from synthtune.api.filter import filter_rows as filter
from synthtune.api.generate import generate
from synthtune.api.runs import Run, compose, fit, predict, run, test, validate
from synthtune.api.score import mauve as score, novelty
from synthtune.api.synalign import evaluate, select

__all__ = ["Run", "compose", "curate", "decontaminate", "evaluate", "export", "export_prompt", "filter", "fit", "generate",
           "novelty", "predict", "run", "score", "select", "test", "validate"]
