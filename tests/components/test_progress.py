"""Plain progress lines of long loops outside Lightning (issue 32, item 7): a Meter stays silent for a quick loop,
then prints done/total, rate and ETA; advance reaches the innermost listener only."""

import io

import numpy as np

from synthtune.components import progress
from synthtune.components.encoders import featurize


def fake_clock(step: float):
    ticks = iter(np.arange(0, 10_000, step))
    return lambda: float(next(ticks))


def test_a_quick_loop_prints_nothing():
    out = io.StringIO()
    with progress.Meter("featurize (x)", 100, "texts", stream=out, now=fake_clock(0.1)):
        for _ in range(10):
            progress.advance(10)
    assert out.getvalue() == ""


def test_a_slow_loop_prints_rate_and_eta_then_a_last_line():
    out = io.StringIO()
    with progress.Meter("featurize (x)", 100, "texts", quiet_seconds=3, every_seconds=10, stream=out,
                        now=fake_clock(2)):
        for _ in range(10):
            progress.advance(10)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("featurize (x): 20/100 texts (20 %), ") and "texts/s" in lines[0]
    assert "ETA " in lines[0] and lines[-1].startswith("featurize (x): 100/100 texts (100 %)")
    # the clock moves 2 s a read: the first line once 3 s passed, then every 10 s, and one at the end
    assert [line.split(",")[0] for line in lines] == ["featurize (x): 20/100 texts (20 %)",
                                                      "featurize (x): 70/100 texts (70 %)",
                                                      "featurize (x): 100/100 texts (100 %)"]


def test_advance_goes_to_the_innermost_listener_only():
    outer, inner = [], []
    progress.advance(3)  # no listener: nothing happens
    with progress.listening(outer.append):
        progress.advance(1)
        with progress.listening(inner.append):
            progress.advance(2)
        progress.advance(4)
    assert outer == [1, 4] and inner == [2]


def test_featurize_reports_its_texts_to_a_meter(monkeypatch):
    class Encoder:
        name, dim = "fake", 2

        def encode(self, texts):
            for _ in texts:
                progress.advance(1)
            return np.zeros((len(texts), 2))

    made = []
    real = progress.Meter

    def meter(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(progress, "Meter", meter)
    featurize(["a", "b", "c"], Encoder(), cache=False)
    assert made[0].name == "featurize (fake)" and made[0].done == 3 and made[0].pace.total == 3
