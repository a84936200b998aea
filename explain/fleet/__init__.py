"""`car fleet audit`: many drive logs audited as `car explain` audits one, on the local pool or on Ray.

- `drives`: which logs (files, folders, globs) and each one's report folder name.
- `adapter`: the only place that reads `explain.audit`'s results (numbers and per-frame metrics by name).
- `work`: one drive's audit in a worker (resumable per drive; the audit's store resumes per frame).
- `report`: the fleet report (HTML + JSON) and every per-frame number as Parquet.
- `run`: the fleet audit itself, on an engine of `car.engines`.
"""
