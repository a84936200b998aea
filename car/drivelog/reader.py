"""The drive log's reader: typed, read-only access to one log, with a salvage path for a damaged file.

A log damaged in the middle (a bad sector, a half-copied file: SQLite then says "database disk image is
malformed") still gives every record before the damage: `records()` reads on record by record from where
the damage stopped the scan, ends at the first record it cannot read, and reports once, in one line, the
file, what is damaged and how many records still read (`DriveLogReader.damage`, printed to stderr).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from car.drivelog.meta import DriveMeta, RunSummary
from car.drivelog.rows import nan_if_none, read_meta, row_to_record
from car.drivelog.schema import SELECT_RECORDS
from car.errors import CarError
from car.timing import StageStat
from car.types import DriveRecord, Fault, FaultKind
from vision.errors import VisionError


@dataclass(frozen=True, slots=True)
class LogDamage:
    """Where a damaged drive log stopped reading, and what still read."""

    path: Path
    what: str  # SQLite's words for the damage
    readable: int  # records read before the damage
    first_unreadable_seq: int

    def message(self) -> str:
        return (
            f"warning: {self.path}: the drive log is damaged ({self.what}) at record "
            f"{self.first_unreadable_seq}; the {self.readable} records before it still read, the rest is "
            "skipped (the file was overwritten or cut; a copy made during the drive may be whole)"
        )


# What a damaged file raises while it is read: SQLite's "malformed" / "not a database", or a stored image
# or mask whose bytes no longer decode.
DAMAGE_ERRORS: tuple[type[Exception], ...] = (sqlite3.DatabaseError, CarError, VisionError)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def print_damage(damage: LogDamage) -> None:
    print(damage.message(), file=sys.stderr)


class DriveLogReader:
    """Typed, read-only access to one drive log.

    `with DriveLogReader(path) as log:` then `log.meta`, `log.summary` (None if the drive did not end
    cleanly, e.g. killed), `len(log)`, `log.records()` (in tick order), `log[seq]`, `log.seqs()`,
    `log.events()`. A log whose writer was killed opens fine and holds everything up to its last commit.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._meta: DriveMeta | None = None

        self.damage: LogDamage | None = None
        self.on_damage: Callable[[LogDamage], None] = print_damage

    def open(self) -> DriveLogReader:
        if not self.path.is_file():
            raise CarError(f"{self.path}: no such drive log; give the .sqlite file `car drive` wrote")
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            conn.row_factory = sqlite3.Row
            self._meta = read_meta(conn)
        except sqlite3.DatabaseError as exc:
            # A killed writer can leave a WAL that a read-only connection cannot recover; a normal
            # connection recovers it (it never rewrites committed data) and then reads normally.
            try:
                conn = sqlite3.connect(self.path)
                conn.row_factory = sqlite3.Row
                self._meta = read_meta(conn)
            except sqlite3.DatabaseError:
                raise CarError(
                    f"{self.path}: not a drive log ({exc}); give the .sqlite file `car drive` wrote"
                ) from exc
        self._conn = conn
        return self

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> DriveLogReader:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("DriveLogReader is not open; use `with DriveLogReader(path) as log:`")
        return self._conn

    @property
    def meta(self) -> DriveMeta:
        if self._meta is None:
            raise RuntimeError("DriveLogReader is not open; use `with DriveLogReader(path) as log:`")
        return self._meta

    @property
    def summary(self) -> RunSummary | None:
        """How the drive ended; None when it did not end cleanly (killed) or that part is damaged."""
        try:
            return self._read_summary()
        except sqlite3.DatabaseError:
            return None

    def _read_summary(self) -> RunSummary | None:
        row = self.conn.execute("SELECT * FROM run_end WHERE id = 1").fetchone()
        if row is None:
            return None
        stages = tuple(
            StageStat(
                s["stage"],
                s["count"],
                *(nan_if_none(s[k]) for k in ("p50_ms", "p99_ms", "mean_ms", "max_ms")),
            )
            for s in self.conn.execute("SELECT * FROM stage_summary ORDER BY rowid")
        )
        counts = json.loads(row["fault_counts_json"])
        return RunSummary(
            end_reason=row["end_reason"],
            ticks=row["ticks"],
            frames=row["frames"],
            stops=row["stops"],
            drives=row["drives"],
            overruns=row["overruns"],
            dropped_images=row["dropped_images"],
            dropped_records=row["dropped_records"],
            fault_counts=tuple((str(k), int(v)) for k, v in counts.items()),
            stages=stages,
            ended_utc=row["ended_utc"],
        )

    def __len__(self) -> int:
        """The number of records; for a damaged log, the number that still read."""
        try:
            return int(self.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])
        except sqlite3.DatabaseError:
            return sum(1 for _ in self.records(images=False))

    def seqs(self) -> list[int]:
        return [int(r[0]) for r in self.conn.execute("SELECT seq FROM records ORDER BY seq")]

    def __getitem__(self, seq: int) -> DriveRecord:
        row = self.conn.execute(SELECT_RECORDS + " WHERE r.seq = ?", (seq,)).fetchone()
        if row is None:
            raise KeyError(f"{self.path}: no record with seq {seq} (the log has {len(self)} records)")
        faults = self._faults_where("seq = ?", (seq,)).get(seq, ())
        return row_to_record(row, faults)

    def records(
        self, *, images: bool = True, masks: bool = True, start: int = 0, stop: int | None = None
    ) -> Iterator[DriveRecord]:
        """Every record with `start <= seq < stop`, in tick order.

        `images=False` skips decoding frames and masks; `masks=False` decodes the frames but not the
        ground-truth masks (for readers that only need what the network saw). In a damaged log, every
        record before the damage (see the module docstring).
        """
        hi = stop if stop is not None else 2**62
        next_seq = start
        try:
            faults = self._faults_where("seq >= ? AND seq < ?", (start, hi))
            cursor = self.conn.execute(
                SELECT_RECORDS + " WHERE r.seq >= ? AND r.seq < ? ORDER BY r.seq", (start, hi)
            )
            for row in cursor:
                record = row_to_record(row, faults.get(int(row["seq"]), ()), images=images, masks=masks)
                next_seq = record.seq + 1
                yield record
            return
        except DAMAGE_ERRORS as exc:
            what = _first_line(exc)
        yield from self._salvage(start, next_seq, hi, what, images=images, masks=masks)

    def _salvage(
        self, start: int, seq: int, hi: int, what: str, *, images: bool, masks: bool
    ) -> Iterator[DriveRecord]:
        """Record by record from `seq` (each lookup can pass a damaged page) to the first that fails."""
        while seq < hi:
            try:
                row = self.conn.execute(SELECT_RECORDS + " WHERE r.seq = ?", (seq,)).fetchone()
                if row is None:
                    break
                record = row_to_record(row, self._faults_of(row), images=images, masks=masks)
            except DAMAGE_ERRORS as exc:
                what = _first_line(exc)
                break
            seq += 1
            yield record
        damage = LogDamage(self.path, what, seq - start, seq)
        if self.damage != damage:
            self.damage = damage
            self.on_damage(damage)

    def _faults_of(self, row: sqlite3.Row) -> tuple[Fault, ...]:
        """A record's faults; their kinds from the record itself when the faults table is damaged."""
        seq = int(row["seq"])
        try:
            return self._faults_where("seq = ?", (seq,)).get(seq, ())
        except sqlite3.DatabaseError:
            kinds = [k for k in str(row["faults"]).split(",") if k]
            return tuple(Fault(FaultKind(k), "(detail lost: the log is damaged)") for k in kinds)

    def events(self) -> list[tuple[float, str, str]]:
        """The events (dropped images, signals, link events); none that a damage made unreadable."""
        try:
            rows = self.conn.execute("SELECT * FROM events ORDER BY rowid").fetchall()
        except sqlite3.DatabaseError:
            return []
        return [(float(t), str(k), str(d)) for t, k, d in rows]

    def _faults_where(self, where: str, params: tuple[object, ...]) -> dict[int, tuple[Fault, ...]]:
        out: dict[int, list[Fault]] = {}
        for seq, kind, detail in self.conn.execute(
            f"SELECT seq, kind, detail FROM faults WHERE {where} ORDER BY rowid", params
        ):
            out.setdefault(int(seq), []).append(Fault(FaultKind(kind), str(detail)))
        return {k: tuple(v) for k, v in out.items()}


def has_image(reader: DriveLogReader, seq: int) -> bool:
    return reader.conn.execute("SELECT 1 FROM frames WHERE seq = ?", (seq,)).fetchone() is not None


def label_of(record: DriveRecord) -> int:
    """The label a record exports as: ground truth when the world knew it, else the car's decision."""
    return record.truth.label if record.truth is not None else record.decision.label
