"""Exponential backoff with jitter: the one retry pacing of Wattline (reconnects, spool replay, restarts).

Why jitter: collectors restarted together (or many stores behind one InfluxDB) must not retry in step.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays ``min_s``, ``factor * min_s``, ... capped at ``max_s``, each scaled by a random factor.

    Parameters
    ----------
    min_s : float
        First delay [s].
    max_s : float
        Largest delay [s] (before jitter).
    factor : float
        Growth per attempt.
    jitter : tuple of float
        The delay is multiplied by a uniform random number in ``[jitter[0], jitter[1]]``.

    Examples
    --------
    >>> b = Backoff(0.5, 30.0, jitter=(1.0, 1.0))
    >>> [b.next_delay() for _ in range(4)]
    [0.5, 1.0, 2.0, 4.0]
    """

    def __init__(self, min_s: float, max_s: float, factor: float = 2.0,
                 jitter: tuple[float, float] = (0.5, 1.0)) -> None:
        if min_s < 0 or max_s < min_s:
            raise ValueError(f"Backoff: need 0 <= min_s <= max_s, got {min_s} and {max_s}")
        self.min_s = float(min_s)
        self.max_s = float(max_s)
        self.factor = max(1.0, float(factor))
        self.jitter = (float(jitter[0]), float(jitter[1]))
        self.attempt = 0

    def peek(self) -> float:
        """The next delay before jitter [s], without counting an attempt."""
        if self.min_s == 0:
            return 0.0
        # Cap the exponent: factor ** attempt must not overflow after months of retries.
        steps = min(self.attempt, 64)
        return min(self.max_s, self.min_s * self.factor ** steps)

    def next_delay(self) -> float:
        """Count one failed attempt and return how long to wait before the next one [s]."""
        delay = self.peek() * random.uniform(*self.jitter)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start again from ``min_s`` (after a success)."""
        self.attempt = 0
