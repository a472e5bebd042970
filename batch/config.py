"""The batch layer's configuration: the `batch:` section of conf/segstream.yaml (composed by
segstream.config.Settings as `batch`, overridden like every section: SEGSTREAM_BATCH__WORKERS=4)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class BatchConfig(BaseModel):
    # Beam DirectRunner worker processes (direct_num_workers, multi_processing mode).
    workers: int = Field(default=2, ge=1)
    # The events table is read as this many key ranges of the hash prefix, one read per range.
    key_ranges: int = Field(default=16, ge=1)
    # Seconds between progress lines on stderr.
    progress_interval_s: float = Field(default=5.0, gt=0)
    # One key range's read may take long on a big table; a silent server fails sooner (attempt).
    read_timeout_s: float = Field(default=3600.0, gt=0)
    attempt_timeout_s: float = Field(default=60.0, gt=0)
    # Beam pipeline options replacing the local DirectRunner ones, e.g. ["--runner=DataflowRunner",
    # "--project=p", "--region=r", "--temp_location=gs://b/tmp", "--setup_file=./setup.py"]: docs/batch.md,
    # "Production runners" (untested here).
    pipeline_options: list[str] = []
    # `segstream backfill`: no user rebuilt for this long (after the first) means the run is stalled
    # (docs/batch.md 6, limits); it is stopped and run again. Must exceed the final savepoint write.
    backfill_stall_timeout_s: float = Field(default=60.0, gt=0)
    # Where `segstream recompute` writes its files unless --out says otherwise.
    out_dir: str = ".segstream/recompute"
