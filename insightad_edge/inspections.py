"""The inspection log: every verdict and every event of a station, in one SQLite file a quality engineer can audit.

One writer thread owns the connection and commits small transactions at least every ``COMMIT_S``, in WAL
mode, each synced to the disk, so a ``kill -9`` or a power cut loses at most the verdicts of the last fraction
of a second and never corrupts the file. Columns are named like the JSON Lines keys, so a query reads like
the stream. The schema's version is SQLite's ``user_version``; a later insightad migrates from it.
"""
from __future__ import annotations

import datetime
import logging
import math
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from .clock import LogClock, impossible_before, parse
from .diskroom import DiskRoom
from .filesystems import network_share
from .imagefiles import readable

try:
    import fcntl
except ImportError:  # not on Windows: there a log is not claimed
    fcntl = None

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
COMMIT_S = 0.25
BUSY_S = 5.0          # how long a write waits for another program's lock on the file before it gives up
RETRY_S = 2.0         # while the file cannot be written (disk full, locked by another program), try again this often
MAX_HELD = 200_000    # records held in memory meanwhile (about 100 MB); past it the oldest are lost, and counted
PRUNE_S = 3600.0      # with a retention period, verdicts older than it are deleted at the start and every hour,
PRUNE_BATCH = 5000    # this many rows a transaction, between the station's own writes
COLUMNS = ("time", "source", "frame", "path", "status", "score", "threshold", "anomaly", "error", "model",
           "model_sha256", "decode_ms", "preprocess_ms", "reconstruct_ms", "score_ms", "latency_ms", "skipped",
           "evidence")
INSERT = {"inspections": f"INSERT INTO inspections ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
          "events": "INSERT INTO events (time, kind, source, message) VALUES (?, ?, ?, ?)"}
SCHEMA = """
CREATE TABLE IF NOT EXISTS inspections (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,                 -- UTC, ISO 8601 with milliseconds and Z
    source TEXT NOT NULL,
    frame TEXT NOT NULL,                -- the file's path, or the frame's number in its stream
    path TEXT,
    status TEXT NOT NULL CHECK (status IN ('ok', 'defect', 'not_inspectable', 'error')),
    score REAL,
    threshold REAL,
    anomaly INTEGER,
    error TEXT,
    model TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    decode_ms REAL, preprocess_ms REAL, reconstruct_ms REAL, score_ms REAL,
    latency_ms REAL,                    -- from the frame's reading to its verdict
    skipped INTEGER NOT NULL DEFAULT 0, -- live frames dropped before this one because the model was busy
    evidence TEXT                       -- the saved frame, relative to the evidence folder
);
CREATE INDEX IF NOT EXISTS inspections_time ON inspections (time);
CREATE INDEX IF NOT EXISTS inspections_status_time ON inspections (status, time);
CREATE INDEX IF NOT EXISTS inspections_source_frame ON inspections (source, frame);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- start, stop, opened, lost, reopened, ended, drift, pruned, unwatched, ...
    source TEXT,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
"""


def storable(value):
    """VALUE as SQLite keeps it: text in ``imagefiles.readable`` form (a file name that is not UTF-8 is refused as
    it comes, and a refused verdict must not cost the log), anything else as it is."""
    return readable(value) if isinstance(value, str) else value


def utc_now() -> str:
    return format_time(datetime.datetime.now(datetime.timezone.utc))


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str, now: Optional[datetime.datetime] = None) -> str:
    """A bound for queries: an ISO 8601 time (local if it has no zone) or an age like ``90m``, ``8h``, ``2d``."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    try:
        moment = None if match else datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO time (2026-11-29T08:00) nor an age (90m, 8h, 2d)") from None
    try:
        if match:
            unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
            moment = (now or datetime.datetime.now(datetime.timezone.utc)) - datetime.timedelta(**{unit: float(match.group(1))})
        return format_time(moment if moment.tzinfo else moment.astimezone())
    except (OverflowError, ValueError):  # an age further back than the calendar reaches, a time at either end of it
        raise ValueError(f"{text!r} lies outside the calendar (before the year 1 or after 9999)") from None


def connect(path: Path, *, readonly: bool = False, any_thread: bool = False) -> sqlite3.Connection:
    """A connection to a log file, made (and its schema created or checked) if needed; ``any_thread`` for one
    opened here and used by another thread (one at a time)."""
    if readonly:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no inspection log at {path}")
        # a log no station writes now, read where this user may not write (a read-only share, another user's
        # folder): SQLite would make its write-ahead log's index beside it, and could not open it at all
        settled = not Path(f"{path}-wal").exists() and not os.access(Path(path).resolve().parent, os.W_OK)
        # as a URI, quoted: a folder named "line #2" (or holding ? or %) would otherwise name another file
        connection = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro" + ("&immutable=1" if settled else ""),
                                     uri=True, timeout=BUSY_S)
    else:
        connection = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_S, check_same_thread=not any_thread)
        _refuse_others(connection, path)  # before WAL, which would stay set in the file
        connection.execute("PRAGMA journal_mode=WAL")
        # each commit is on the disk before the next (WAL's NORMAL syncs only at checkpoints, so a power cut
        # could take back minutes of verdicts on a busy line, hours on a slow one): 0.2 ms, 4 times a second
        connection.execute("PRAGMA synchronous=FULL")
    connection.row_factory = sqlite3.Row
    if readonly:
        _refuse_others(connection, path)
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise ValueError(f"{path} was written by a newer insightad (log schema {version}); update insightad")
    if not readonly and version < SCHEMA_VERSION:
        connection.executescript(SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
    return connection


def _refuse_others(connection: sqlite3.Connection, path: Path) -> None:
    """Another program's SQLite database is no log, and is left as it was: a station given it by mistake (`--log
    /var/lib/mes/line.db`) added its tables, stamped its version and switched the file to WAL, which that program's
    other clients (one on a network share) may not be able to use."""
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = connection.execute("PRAGMA user_version").fetchone()[0]
    except BaseException:
        connection.close()
        raise
    others = sorted(name for name in tables - {"inspections", "events"} if not name.startswith("sqlite_"))
    if others and version == 0:
        connection.close()
        raise ValueError(f"{path} is another program's SQLite database (its tables: {', '.join(others[:5])}), not an "
                         "inspection log: left as it was; give the station a log of its own")


def claim(path: Path, taken: str) -> int:
    """A file descriptor of PATH (made if need be) holding an exclusive ``flock`` on it while this process runs; the
    system drops it with the process (a crash, ``kill -9``). Another process holding it: ValueError(``taken``).
    flock leaves SQLite's own locks (fcntl's) alone."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # an empty file is a new database to SQLite
    if fcntl is None:
        return descriptor
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise ValueError(taken) from None
    except OSError as exc:  # a file system without flock: it works, unclaimed
        log.warning("cannot claim %s for this process alone (%s)", path, exc.strerror or exc)
    return descriptor


NEW_LOG = ("the log file was deleted or moved away while the station ran: a new one starts here (a moved file keeps "
           "every verdict until then; a deleted one takes them with it)")


class InspectionLog:
    """Append verdicts and events from any thread; one writer thread commits them in small transactions.

    While the file cannot be written (a full disk, another program holding a write lock) the writer holds the
    records and tries again every ``RETRY_S``, so nothing is lost once it can write; ``unwritten`` counts what
    never reached the file (known after ``close``). With ``keep_days`` the writer deletes verdicts older than
    that, at the start and every ``PRUNE_S``, and says so in a ``pruned`` event: a station on a live camera
    writes about 1 GB a day, which no line PC's disk holds for ever. Events are kept, and so are verdicts stamped
    before the model that gave them (``model_sha256``, ``model_created``) was made: a wrong clock stamped them, and
    their age is unknown. ``room`` forecasts when the disk is full; the writer says so in a ``disk`` event (and on
    stderr) when it runs short, and when no longer; ``clock`` says when the PC's clock is wrong, in a ``clock``
    event likewise.
    """

    def __init__(self, path: Path, keep_days: float | None = None, *, model_sha256: str | None = None,
                 model_created: str = ""):
        self.path, self.keep_days = Path(path), keep_days
        self._protected = (model_sha256, impossible_before(model_created))
        if (share := network_share(self.path.parent)) is not None:
            raise ValueError(f"{self.path} lies on a network share, {share}: SQLite's locks do not reach other PCs, and two "
                             "stations given one log there corrupted it, every verdict lost. Give --log a path on this "
                             "PC's own disk; to put a copy on the share while the station runs: sqlite3 "
                             f"{self.path.name} \".backup /path/on/share/{self.path.name}\"")
        self._claim = self._claimed()  # before SQLite opens it: closing a foreign handle would drop SQLite's locks
        try:
            self._writer = connect(self.path, any_thread=True)  # opened now: a bad path fails before the line starts
        except BaseException:
            os.close(self._claim)
            raise
        self.unwritten, self._holding = 0, False
        self.held = 0  # records waiting in memory because the file cannot take them now (a full disk, a lock)
        self.room, self.clock = DiskRoom(self.path.resolve().parent), LogClock(model_created, _newest(self._writer))
        self._troubled: set[str] = set()  # what the log has been told is wrong now: "disk", "clock"
        self._queue: queue.Queue = queue.Queue()
        self._reader = connect(self.path, any_thread=True)  # for ``seen``, under its lock, from the station's thread
        self._reader_lock = threading.Lock()
        self._thread = threading.Thread(target=self._write, name="inspection log", daemon=True)
        self._thread.start()

    def record(self, row: dict) -> None:
        """One verdict; keys are COLUMNS (missing ones are NULL)."""
        self._queue.put(("inspections", tuple(storable(row.get(c, 0 if c == "skipped" else None)) for c in COLUMNS)))

    def event(self, kind: str, message: str, source: str | None = None) -> None:
        self._queue.put(("events", (utc_now(), kind, storable(source), storable(message))))

    def seen(self, source: str, frame: str) -> bool:
        """Whether this frame of this source has a verdict already (a restarted folder watch skips it)."""
        with self._reader_lock:
            return self._reader.execute("SELECT 1 FROM inspections WHERE source = ? AND frame = ? LIMIT 1",
                                        (storable(source), storable(frame))).fetchone() is not None

    def last_active(self, source: str) -> Optional[float]:
        """When this log last heard of SOURCE (its newest verdict or event), as epoch seconds; None if never. Read
        newest first, without the source's index: a station's own source is at the end of its log."""
        with self._reader_lock:
            times = [row[0] for table in ("inspections", "events") if (row := self._reader.execute(
                f"SELECT time FROM {table} NOT INDEXED WHERE source = ? ORDER BY id DESC LIMIT 1", (storable(source),))
                .fetchone())]
        return max((parse(t).timestamp() for t in times), default=None)

    def close(self) -> None:
        """Write everything queued, then stop the writer; the claim goes last, once SQLite has closed the file."""
        self._queue.put(None)
        self._thread.join()
        self._reader.close()
        if self._claim is not None:  # None: the file went away and no new one could be made
            os.close(self._claim)

    def _write(self) -> None:
        held: list[tuple[str, tuple]] = []  # records the file could not take yet
        retry_at, closing = 0.0, False
        prune_at, pruned = (time.monotonic() if self.keep_days else math.inf), 0
        while not closing:
            until_pruning = None if prune_at == math.inf else max(0.0, prune_at - time.monotonic())
            batch = self._next_batch(wait=RETRY_S if held else until_pruning)
            closing = bool(batch) and batch[-1] is None
            records = [item for item in batch if item is not None]
            held += [(INSERT[table], values) for table, values in records]
            if records:  # a record's time comes first
                self.clock.stamped(max(values[0] for _, values in records))
            # the writer must outlive any surprise: dead, it would leave every later verdict unlogged, uncounted
            if held and (closing or time.monotonic() >= retry_at):
                try:
                    held = self._store(held)
                except Exception:  # not the file's refusal (_store holds those): kept, and tried again
                    log.exception("could not write to %s; the verdicts are held", self.path)
                retry_at = time.monotonic() + RETRY_S if held else 0.0  # a file that refused is given a rest
                self.held = len(held)
            if not held and not closing and time.monotonic() >= prune_at:
                try:
                    deleted, horizon = self._prune(self._writer)
                except Exception:
                    log.exception("could not delete old verdicts from %s", self.path)
                    deleted, horizon = 0, ""
                pruned += deleted
                if deleted < PRUNE_BATCH:  # this round is done: say so, and rest until the next
                    if pruned:
                        self.event("pruned", f"deleted {pruned} verdicts from before {horizon} "
                                              f"(the log keeps {self.keep_days:g} days)")
                    prune_at, pruned = time.monotonic() + PRUNE_S, 0
            if not closing:  # an event queued now would come after the end
                self._watch()
        if held:
            self.unwritten += len(held)
            log.error("%d verdicts and events never reached %s", len(held), self.path)
        if self._writer is not None:
            self._writer.close()

    def _watch(self) -> None:
        """Sample the disk's free space; tell the log (and stderr) once when the disk runs short or the PC's clock
        is found wrong, and once when no longer."""
        self.room.sample()
        for kind, words, after in (
                ("disk", self.room.shortage(), f"the log's disk has room again ({self.room.free / 1e9:.1f} GB free)"),
                ("clock", self.clock.wrong(), f"the PC's clock was set: it reads {utc_now()}")):
            if words is not None and kind not in self._troubled:
                self._troubled.add(kind)
                log.warning("%s", words)
                self.event(kind, words)
            elif words is None and kind in self._troubled:
                self._troubled.discard(kind)
                self.event(kind, after)

    def _claimed(self) -> int:
        """The log for this station alone: two stations logging into one file, on one folder, would judge each part
        twice and count it twice, in silence; the second is refused before its line starts."""
        return claim(self.path, f"another station is logging to {self.path}: a log keeps one station's verdicts (stop "
                                "that one first, or give this one its own --log)")

    def _still_there(self) -> bool:
        """Whether the file at the log's path is still the one this station writes: an operator may delete it (to
        free the disk, which it does not while the station holds it) or move it away (to keep a month apart)."""
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self._claim)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def _start_anew(self) -> None:
        """A new log at the path, once the old file is let go complete: its write-ahead log is emptied into it, so
        a moved file holds every verdict until now, and the new file does not meet the old one's WAL. What cannot be
        opened raises, and the verdicts are held until it can (the station's reader waits meanwhile)."""
        with self._reader_lock:
            if self._writer is not None:
                try:
                    self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:
                    log.warning("the old log file could not take its last verdicts (%s)", exc)
                self._writer.close()
                self._reader.close()
                os.close(self._claim)
                self._writer = self._claim = None
            descriptor = self._claimed()
            try:
                self._writer, self._reader = connect(self.path, any_thread=True), connect(self.path, any_thread=True)
            except BaseException:
                os.close(descriptor)
                self._writer = None
                raise
            self._claim = descriptor
        log.warning("%s: %s", self.path, NEW_LOG)

    def _prune(self, connection: sqlite3.Connection) -> tuple[int, str]:
        """Delete up to PRUNE_BATCH verdicts older than the retention period: (how many, the horizon)."""
        try:
            horizon = format_time(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=self.keep_days))
        except OverflowError:  # further back than the calendar goes (--log-keep-days 1e6): nothing is that old
            return 0, ""
        sha256, impossible = self._protected
        kept, values = "", [horizon]
        if sha256 is not None and impossible is not None:  # stamped before its model was made: its age is unknown
            kept, values = " AND NOT (model_sha256 = ? AND time < ?)", [horizon, sha256, format_time(impossible)]
        try:
            cursor = connection.execute("DELETE FROM inspections WHERE id IN (SELECT id FROM inspections WHERE time < ?"
                                        f"{kept} ORDER BY time LIMIT ?)", (*values, PRUNE_BATCH))
        except sqlite3.Error as exc:  # the file is busy or full: the verdicts wait, and so does the pruning
            log.warning("could not delete old verdicts from %s: %s", self.path, exc)
            return 0, horizon
        return cursor.rowcount, horizon

    def _next_batch(self, wait: float | None) -> list:
        """What arrives within COMMIT_S of the first record (None ends the log); empty after ``wait`` seconds idle."""
        try:
            batch = [self._queue.get(timeout=wait)]
        except queue.Empty:
            return []
        began = time.monotonic()
        while batch[-1] is not None and len(batch) < 500 and time.monotonic() - began < COMMIT_S:
            try:
                batch.append(self._queue.get(timeout=COMMIT_S / 5))
            except queue.Empty:
                break
        return batch

    def _store(self, items: list[tuple[str, tuple]]) -> list[tuple[str, tuple]]:
        """Commit the items, in a new file at the path if the old one went away; what the file cannot take now comes
        back, to be held (past MAX_HELD the oldest are lost)."""
        try:
            if self._writer is None or not self._still_there():
                self._start_anew()
                items = [(INSERT["events"], (utc_now(), "new_log", None, NEW_LOG)), *items]
        except (OSError, ValueError, sqlite3.Error) as exc:  # no file at the path can be made or claimed now
            return self._hold(items, exc)
        try:
            _commit(self._writer, items)
        except sqlite3.OperationalError as exc:  # the file, not the records: hold them and try again
            return self._hold(items, exc)
        except Exception:  # one bad record must not cost the others: write them one by one
            for item in items:
                try:
                    _commit(self._writer, [item])
                except Exception:
                    self.unwritten += 1
                    log.exception("could not write %s to %s", item[1], self.path)
        if self._holding:
            log.warning("%s takes verdicts again: %d held ones written", self.path, len(items))
            self._holding = False
        return []

    def _hold(self, items: list[tuple[str, tuple]], why: Exception) -> list[tuple[str, tuple]]:
        """The items back, to be tried again (said once while it lasts; past MAX_HELD the oldest are lost)."""
        if not self._holding:
            log.warning("cannot write to %s (%s): holding verdicts in memory, retrying every %g s", self.path, why,
                        RETRY_S)
        self._holding = True
        if len(items) > MAX_HELD:
            self.unwritten += len(items) - MAX_HELD
            items = items[-MAX_HELD:]
        return items


def _newest(connection: sqlite3.Connection) -> str | None:
    """The newest stamp of a log's verdicts and events, or None for a new log."""
    return max((row[0] for table in ("inspections", "events")
                if (row := connection.execute(f"SELECT max(time) FROM {table}").fetchone())[0] is not None), default=None)


def _commit(connection: sqlite3.Connection, items: list[tuple[str, tuple]]) -> None:
    """Insert the items in one transaction, or none of them."""
    try:
        connection.execute("BEGIN")
        for statement, values in items:
            connection.execute(statement, values)
        connection.execute("COMMIT")
    except Exception:  # whatever failed, the file is left as it was: an open transaction would refuse all after
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def verdicts(path: Path, since: str | None = None, until: str | None = None,
             status: str | None = None, source: str | None = None) -> Iterator[sqlite3.Row]:
    """The logged verdicts in time order, filtered by time bounds (see ``parse_time``), status and source."""
    where, values = [], []
    for clause, value in (("time >= ?", since), ("time < ?", until), ("status = ?", status), ("source = ?", source)):
        if value is not None:
            where.append(clause)
            values.append(storable(value))
    connection = connect(path, readonly=True)
    try:
        yield from connection.execute(f"SELECT {', '.join(COLUMNS)} FROM inspections"
                                      + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY time, id",
                                      values)
    finally:
        connection.close()


def recent(path: Path, source: str, seconds: float) -> list[tuple[float, str, int]]:
    """(age in seconds, status, skipped) of SOURCE's verdicts of the last SECONDS, oldest first."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return [((now - parse(row["time"])).total_seconds(), row["status"], row["skipped"])
            for row in verdicts(path, format_time(now - datetime.timedelta(seconds=seconds)), source=source)]


def summary(path: Path, since: str | None = None, until: str | None = None) -> list[dict]:
    """Per hour (UTC): parts, defects, defect rate among judged parts, not inspectable, errors, live frames skipped
    while busy, p95 latency. Counted by SQLite an hour at a time: a month of a live camera's verdicts (78 million
    rows at 30 frames/s) held in Python took gigabytes, on the PC that runs the station."""
    bounds = [(clause, value) for clause, value in (("time >= ?", since), ("time < ?", until)) if value is not None]
    clauses, values = [clause for clause, _ in bounds], [value for _, value in bounds]
    in_hour = ("SELECT latency_ms FROM inspections WHERE " + " AND ".join(["time >= ?", "time < ?", *clauses])
               + " AND latency_ms IS NOT NULL ORDER BY latency_ms LIMIT 2 OFFSET ?")  # an hour's times: ':' < ';'
    connection = connect(path, readonly=True)
    try:
        table = []
        for hour, parts, defects, not_inspectable, errors, skipped, timed in connection.execute(
                "SELECT substr(time, 1, 13), count(*), sum(status = 'defect'), sum(status = 'not_inspectable'), "
                "sum(status = 'error'), coalesce(sum(skipped), 0), count(latency_ms) FROM inspections"
                + (f" WHERE {' AND '.join(clauses)}" if clauses else "") + " GROUP BY 1 ORDER BY 1", values).fetchall():
            judged = parts - not_inspectable - errors
            table.append({"hour": hour + ":00Z", "parts": parts, "defects": defects, "not_inspectable": not_inspectable,
                          "errors": errors, "skipped": skipped, "defect_rate": defects / judged if judged else None,
                          "p95_latency_ms": _percentile(connection, in_hour, [hour, hour + ";", *values], timed, 95)})
        return table
    finally:
        connection.close()


def _percentile(connection: sqlite3.Connection, query: str, values: list, count: int, q: float) -> float | None:
    """numpy's (linear) percentile Q of the COUNT values QUERY orders, reading the two around it: no list of them."""
    if not count:
        return None
    rank = q / 100 * (count - 1)
    below = int(rank)
    pair = [row[0] for row in connection.execute(query, values + [below])]
    return float(pair[0] + (rank - below) * ((pair[1] if len(pair) > 1 else pair[0]) - pair[0]))


def events(path: Path, since: str | None = None, until: str | None = None) -> list[dict]:
    """The logged events in time order (start, stop, a source lost and back, drift, pruned), within time bounds."""
    where = [clause for clause, value in (("time >= ?", since), ("time < ?", until)) if value is not None]
    connection = connect(path, readonly=True)
    try:
        return [dict(row) for row in connection.execute(
            "SELECT time, kind, source, message FROM events" + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY time, id", [v for v in (since, until) if v is not None])]
    finally:
        connection.close()
