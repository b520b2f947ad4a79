"""Downstream students: the small models a user trains on real + synthetic rows (SynAlign's "smaller model")."""

from synthtune.components.students.encoder_classifier import EncoderClassifier, minilm_path
from synthtune.components.students.splits import curve_split, matched_random_subset
from synthtune.components.students.training import StudentRun, predict_labels, train_student

__all__ = ["EncoderClassifier", "StudentRun", "curve_split", "matched_random_subset", "minilm_path", "predict_labels", "train_student"]
