"""Latest wins: the bookkeeping of interactive re-computation, without any thread library.

A click-to-segment dock re-segments on every prompt change. Stacking one job per change
would make the screen lag further behind each click; cancelling threads is not possible in
Python. The rule here:

* every request supersedes the ones before it (:meth:`LatestWins.supersede`); a running job
  sees it through its ``cancel()`` callable and may stop early;
* while a job runs, a new request only marks itself pending; when the job ends, the newest
  pending request starts (never the ones in between);
* an answer is used only if it is for the newest request (:meth:`LatestWins.is_current`).

The GUI starts the jobs with napari's thread_worker; tests drive this class with plain
threads. It holds no thread and no Qt object.
"""

from __future__ import annotations

import threading
from typing import Callable


class LatestWins:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.generation = 0
        self.running = False
        self.pending = False

    def supersede(self) -> int:
        """A newer request: whatever runs is stale from now on. Returns the new generation."""
        with self._lock:
            self.generation += 1
            return self.generation

    def defer_if_busy(self) -> bool:
        """True (and the request is remembered) when a job runs; the caller returns and the
        request starts when that job ends. False: the caller may start now."""
        with self._lock:
            if self.running:
                self.pending = True
                return True
            self.pending = False
            return False

    def start(self) -> int:
        """The caller starts a job for the newest request; returns the generation it serves."""
        with self._lock:
            self.running = True
            return self.generation

    def cancel_for(self, generation: int) -> Callable[[], bool]:
        """The job's ``cancel()``: true once a newer request came in."""
        return lambda: generation != self.generation

    def is_current(self, generation: int) -> bool:
        return generation == self.generation

    def finish(self) -> bool:
        """The running job ended (answer used or dropped). True when a request arrived
        meanwhile: the caller starts it now."""
        with self._lock:
            self.running = False
            pending, self.pending = self.pending, False
            return pending
