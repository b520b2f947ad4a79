"""Lightning callbacks: the resumable JSONL sample writer, the sample logger, run checkpointing and the progress bar."""

from synthtune.callbacks.checkpoint import RunCheckpoint
from synthtune.callbacks.jsonl_writer import JsonlPredictionWriter
from synthtune.callbacks.progress import RunProgressBar
from synthtune.callbacks.sample_logger import SampleLogger
from synthtune.callbacks.token_weight_report import TokenWeightReport

__all__ = ["JsonlPredictionWriter", "RunCheckpoint", "RunProgressBar", "SampleLogger", "TokenWeightReport"]
