"""Progress of a long job in its log: how much is done, how fast, and how long is left.

Standard library only, like `core.files`, so that every environment of the workflow can use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")
SECONDS_PER_MINUTE = 60
EVERY_UNIT = 0.0
"""`every_s` for work whose units are slow (epochs): a line for each."""


def duration(seconds: float) -> str:
    """`seconds` in words a log reader takes in at a glance: 42 s, 3 min 05 s, 2 h 07 min."""
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, SECONDS_PER_MINUTE)
    hours, minutes = divmod(minutes, SECONDS_PER_MINUTE)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


class Progress:
    """Counts units of work (`unit`: frame, window, epoch) towards `total` and reports through `report`: every
    `every_s` seconds at most while the work goes on, and once when it is complete. `total` None: unknown, so
    no share or time left is given. An `upper_bound` total (epochs under early stopping) says "at most"."""

    def __init__(self, what: str, unit: str, total: int | None, report: Callable[[str], None], every_s: float,
                 upper_bound: bool = False, clock: Callable[[], float] = time.monotonic):
        self.what, self.unit, self.total, self.report = what, unit, total, report
        self.every_s, self.upper_bound, self.clock = every_s, upper_bound, clock
        self.done = self.reported = 0
        self.started = self.last_report = clock()

    def status(self) -> str:
        elapsed = self.clock() - self.started
        count = f"{self.done}" if self.total is None else f"{self.done} of {'at most ' * self.upper_bound}{self.total}"
        parts = [f"{self.what}: {count} {self.unit}s"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            parts.append(f"{rate:.1f} {self.unit}s/s" if rate >= 1 else f"{elapsed / self.done:.1f} s per {self.unit}")
            if self.total is not None and self.done < self.total:
                parts.append(f"{'at most ' * self.upper_bound}{duration((self.total - self.done) / rate)} left")
        parts.append(f"{duration(elapsed)} so far" if self.total is None or self.done < self.total
                     else f"took {duration(elapsed)}")
        return ", ".join(parts)

    def advance(self, units: int = 1) -> None:
        self.done += units
        now = self.clock()
        if now - self.last_report >= self.every_s or (self.total is not None and self.done >= self.total):
            self.last_report, self.reported = now, self.done
            self.report(self.status())

    def finish(self) -> None:
        """Reports the end of work that stopped short of `total` (early stopping) or had no total, unless the
        last line already said it."""
        if self.done != self.reported:
            self.reported = self.done
            self.report(self.status())


def counted(items: Iterable[Item], progress: Progress) -> Iterator[Item]:
    """`items` unchanged, each one counted by `progress` as it is taken; the end is reported too."""
    for item in items:
        yield item
        progress.advance()
    progress.finish()
