"""Lightning callbacks: the resumable JSONL sample writer, the sample logger, run checkpointing, the progress bar and
plain progress lines for a log file."""

from synthtune.callbacks.checkpoint import RunCheckpoint
from synthtune.callbacks.jsonl_writer import JsonlPredictionWriter
from synthtune.callbacks.plain_progress import PlainProgress
from synthtune.callbacks.progress import RunProgressBar
from synthtune.callbacks.sample_logger import SampleLogger
from synthtune.callbacks.token_weight_report import TokenWeightReport

__all__ = ["JsonlPredictionWriter", "PlainProgress", "RunCheckpoint", "RunProgressBar", "SampleLogger", "TokenWeightReport"]
