"""Lightning callbacks: the resumable JSONL sample writer and the training-time sample logger."""

from synthtune.callbacks.jsonl_writer import JsonlPredictionWriter
from synthtune.callbacks.sample_logger import SampleLogger

__all__ = ["JsonlPredictionWriter", "SampleLogger"]
