"""Whether the PC's clock can stamp verdicts: a quality record is only as right as its times.

A line PC whose clock battery has died starts at its firmware's date, years back, and one cut off from a time
server never learns better. Its verdicts were stamped years ago without a word: `log --since 8h` missed them, and
once someone set the clock right, `--log-keep-days` deleted them as years old. What a station can know for certain
is that a clock reading before the model it runs was made, or before the newest record of its own log, is wrong.
"""
from __future__ import annotations

import datetime
import threading
from typing import Optional

LOG_SLACK = datetime.timedelta(minutes=5)  # this PC's own stamps: a time server may set a fast clock back a little
MADE_SLACK = datetime.timedelta(days=1)    # the model's making was stamped by the training PC's clock, not this one


def parse(stamp: str) -> Optional[datetime.datetime]:
    """A stamp of the log's or the model's (ISO 8601, ``Z`` or an offset) as an aware time; None if it is none."""
    try:
        moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def impossible_before(model_created: str) -> Optional[datetime.datetime]:
    """The time before which no verdict of a model made at MODEL_CREATED can have been given (a clock that stamped
    one so was wrong, and the verdict's age is unknown); None for a model that does not say when it was made."""
    made = parse(model_created)
    return None if made is None else made - MADE_SLACK


class LogClock:
    """The PC's clock against what it cannot read earlier than: the model's making and the log's newest record.

    ``stamped`` is told every stamp the log takes; ``wrong`` says why the clock is wrong now, or None.
    """

    def __init__(self, model_created: str = "", newest: str | None = None):
        self.made = parse(model_created)
        self._newest = parse(newest) if newest else None
        self._lock = threading.Lock()  # stamped by the log's writer, read by the page and the metrics

    def stamped(self, stamp: str) -> None:
        moment = parse(stamp)
        with self._lock:
            if moment is not None and (self._newest is None or moment > self._newest):
                self._newest = moment

    def wrong(self, now: datetime.datetime | None = None) -> str | None:
        """Why the clock cannot be right, and what to do; None while nothing says so."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        with self._lock:
            newest = self._newest
        if self.made is not None and now < self.made - MADE_SLACK:
            then = f"before the model it runs was made ({self.made:%Y-%m-%d %H:%M} UTC by the training PC's clock)"
        elif newest is not None and now < newest - LOG_SLACK:
            then = (f"before the newest record of its log ({newest:%Y-%m-%d %H:%M} UTC; the clock went back, or ran "
                    "ahead then)")
        else:
            return None
        return (f"the PC's clock reads {now:%Y-%m-%d %H:%M} UTC, {then}: the verdicts are stamped with it, and "
                "`log --since` does not find them; set the clock (timedatectl set-time, or a time server: "
                "timedatectl set-ntp true)")
