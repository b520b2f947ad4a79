"""Progress of long loops as plain lines: done/total, rate, elapsed and ETA.

* :class:`Pace` times a count against its total and writes the line (``24/48 samples (50 %), 1.31 samples/s,
  elapsed 0:18, ETA 0:18``); the Lightning callback ``PlainProgress`` prints it for fit and predict.
* :func:`advance` is how deep loops report work done without knowing who listens: the sampler reports each
  sample that ends, the encoders each batch of texts. The innermost :func:`listening` callback receives it (the
  predict progress line, or a :class:`Meter`); with none, it costs nothing.
* :class:`Meter` is the line of a loop outside Lightning (featurising texts for curation, scoring, SynAlign): silent
  for its first seconds, then a line every ``every_seconds`` and one at the end, on stderr.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from typing import IO, Callable, Iterator, Optional

_listeners: list[Callable[[int], None]] = []


def clock(seconds: float) -> str:
    """``seconds`` as m:ss (or h:mm:ss); ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Pace:
    """Counts done out of a total since a start, and decides when a line is due (every ``every_n`` ticks, a
    tick being a step, a batch or a sample, or every ``every_seconds``). ``now`` is the clock."""

    def __init__(self, total: Optional[float], start_count: int, every_n: int, every_seconds: float,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.total, self.start_count, self.every_n, self.every_seconds = total, start_count, every_n, every_seconds
        self.now = now
        self.started = self.last_time = now()
        self.last_count = start_count
        self.ticks = self.last_tick = 0

    def due(self, count: int) -> bool:
        """Count one tick at ``count`` done; whether a line is due now."""
        self.ticks += 1
        first = self.last_tick == 0
        last = self.total is not None and count >= self.total
        return (first or last or self.ticks - self.last_tick >= self.every_n
                or self.now() - self.last_time >= self.every_seconds)

    def line(self, count: int, unit: str, name: str = "", extra: str = "") -> str:
        """``name count/total unit (p %), extra, rate unit/s, elapsed, ETA``; marks the line as printed."""
        now = self.now()
        self.last_time, self.last_count, self.last_tick = now, count, self.ticks
        elapsed = now - self.started
        rate = (count - self.start_count) / elapsed if elapsed > 0 else float("nan")
        known = self.total is not None and math.isfinite(self.total) and self.total > 0
        head = f"{name}{count}" + (f"/{int(self.total)}" if known else "") + (f" {unit}" if not name else "")
        if known:
            head += f" ({100 * count / self.total:.0f} %)"
        eta = (self.total - count) / rate if known and rate > 0 else float("nan")
        speed = f"{rate:.2f} {unit}/s" if math.isfinite(rate) else f"? {unit}/s"
        return ", ".join(part for part in (head, extra, speed, f"elapsed {clock(elapsed)}", f"ETA {clock(eta)}") if part)


@contextmanager
def listening(callback: Callable[[int], None]) -> Iterator[None]:
    """Within the block, :func:`advance` calls ``callback`` (the innermost listener only)."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


def advance(done: int) -> None:
    """Report ``done`` more units of work (samples, texts) to the innermost listener, if any."""
    if _listeners and done:
        _listeners[-1](done)


class Meter:
    """The progress line of a loop outside Lightning: ``with Meter("featurize (minilm)", len(texts), "texts"):``
    and the loop reports through :func:`advance`. Nothing is printed during the first ``quiet_seconds`` (a quick
    loop stays silent); then a line every ``every_seconds``, and a last one when the block ends."""

    def __init__(self, name: str, total: int, unit: str, quiet_seconds: float = 3.0, every_seconds: float = 10.0,
                 stream: Optional[IO[str]] = None, now: Callable[[], float] = time.monotonic) -> None:
        self.name, self.unit, self.quiet_seconds, self.every_seconds = name, unit, quiet_seconds, every_seconds
        self.stream, self.done, self.printed = stream, 0, False
        self.pace = Pace(total, 0, sys.maxsize, every_seconds, now)

    def _emit(self) -> None:
        print(f"{self.name}: {self.pace.line(self.done, self.unit)}", file=self.stream or sys.stderr, flush=True)
        self.printed = True

    def advance(self, done: int) -> None:
        self.done += done
        waited = self.pace.now() - (self.pace.last_time if self.printed else self.pace.started)
        if waited >= (self.every_seconds if self.printed else self.quiet_seconds):
            self._emit()

    def __enter__(self) -> "Meter":
        self._listening = listening(self.advance)
        self._listening.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listening.__exit__(*exc)
        if self.printed and exc[0] is None and self.done != self.pace.last_count:
            self._emit()
