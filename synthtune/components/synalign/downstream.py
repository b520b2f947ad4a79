"""SynAlign's downstream check (Ren et al., Sec. 4): how useful is a training set for a classifier?

Logistic regression on frozen sentence embeddings, trained on one set and scored on held-out real
rows (accuracy and macro-F1), and the MMD² between two embedded sets.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import Tensor

from synthtune.components.synalign.mmd import mmd2_minibatch


def train_and_score(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, c: float,
                    seed: int) -> dict[str, float] | None:
    """Accuracy and macro-F1 of logistic regression trained on (x, y); ``None`` when y has one label."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    if len(np.unique(y)) < 2:
        return None
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit(x, y)
    pred = clf.predict(x_test)
    return {"accuracy": float(accuracy_score(y_test, pred)),
            "macro_f1": float(f1_score(y_test, pred, average="macro", labels=np.unique(y_test)))}


def mmd2_between(a: Tensor, b: Tensor, bandwidths: Sequence[float], seed: int) -> float:
    """MMD² between two embedded sets: exact up to 2048 rows each, else a mean over 8 random mini-batches."""
    small = a.shape[0] <= 2048 and b.shape[0] <= 2048
    return mmd2_minibatch(a, b, bandwidths, num_batches=1 if small else 8, seed=seed)
