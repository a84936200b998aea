"""The drive log: one SQLite file per drive, written behind the control loop, readable by anyone.

One module per job: `schema` (the tables), `meta` (what drove and how it ended; `bundle_matches`),
`writer` (the thread behind the loop), `reader` (typed reading, salvage of a damaged file), `rows`
(record <-> row conversion) and `masks` (the ground-truth mask codec). Every name importable from
`car.drivelog` before the split still is.
"""

from __future__ import annotations

from car.drivelog.masks import decode_mask, encode_mask
from car.drivelog.meta import BundleFile, DriveMeta, RunSummary, bundle_matches, utc_now
from car.drivelog.reader import DAMAGE_ERRORS, DriveLogReader, LogDamage, has_image, label_of, print_damage
from car.drivelog.rows import read_meta, record_row, row_to_record, without_image
from car.drivelog.schema import RECORD_COLUMNS, SCHEMA, SCHEMA_VERSION, SELECT_RECORDS
from car.drivelog.writer import DriveLogWriter
from vision.labels import label_name

__all__ = [
    "DAMAGE_ERRORS",
    "RECORD_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SELECT_RECORDS",
    "BundleFile",
    "DriveLogReader",
    "DriveLogWriter",
    "DriveMeta",
    "LogDamage",
    "RunSummary",
    "bundle_matches",
    "decode_mask",
    "encode_mask",
    "has_image",
    "label_name",
    "label_of",
    "print_damage",
    "read_meta",
    "record_row",
    "row_to_record",
    "utc_now",
    "without_image",
]
