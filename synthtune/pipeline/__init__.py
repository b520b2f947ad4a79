"""``synthtune pipeline``: real examples -> a curated, scored, documented synthetic dataset, resumably.

``stages`` (what each stage calls), ``manifest`` (what makes a stage done), ``lock`` (one run per root),
``runner`` (the order, skipping and resuming), ``export`` (the Hugging Face dataset and card) and ``report``.
"""

from synthtune.pipeline.runner import run_pipeline
from synthtune.pipeline.stages import ORDER, STAGES

__all__ = ["ORDER", "STAGES", "run_pipeline"]
