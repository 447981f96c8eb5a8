"""What an ingest reports: per file (lines, accepted, duplicates, conflicts, rejected,
days, the first reject reason, or the error that kept it out) and in total."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any


@dataclass
class FileReport:
    """What happened to one source file (or a folder that could not be listed)."""

    source_file: str
    sha256: str = ""
    size_bytes: int = 0
    lines: int = 0  # non-blank lines
    blank_lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    days: list[date] = field(default_factory=list)
    #: Why the file (or folder) could not be ingested at all; None when it was.
    error: str | None = None
    #: Where a landing file that could not be read was moved (with its .reason.json).
    quarantined_to: str | None = None
    #: The most frequent reason among the file's rejected lines.
    top_reject_reason: str | None = None


@dataclass
class IngestReport:
    """The outcome of one ingest call."""

    ingest_id: str | None
    files: list[FileReport]
    snapshot_id: int | None = None
    rejects_file: str | None = None
    #: Wall and CPU (``*_cpu``) seconds per phase: find (the landing's new files; from
    #: object storage, their download), stage, dedupe, commit, publish.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[FileReport]:
        return [f for f in self.files if f.error]

    @property
    def all_rejected(self) -> list[FileReport]:
        """Committed files none of whose lines was accepted or a duplicate."""
        return [f for f in self.files if not f.error and f.rejected and f.rejected == f.lines]

    def total(self, name: str) -> int:
        return sum(int(getattr(f, name)) for f in self.files if not f.error)

    @property
    def days(self) -> list[date]:
        return sorted({d for f in self.files if not f.error for d in f.days})

    def to_dict(self) -> dict[str, Any]:
        return {
            "ingest_id": self.ingest_id,
            "files": len([f for f in self.files if not f.error]),
            "lines": self.total("lines"),
            "accepted": self.total("accepted"),
            "duplicates": self.total("duplicates"),
            "rejected": self.total("rejected"),
            "conflicts": self.total("conflicts"),
            "blank_lines": self.total("blank_lines"),
            "days": [d.isoformat() for d in self.days],
            "snapshot_id": self.snapshot_id,
            "rejects_file": self.rejects_file,
            "failed_files": [
                {"file": f.source_file, "error": f.error, "quarantined_to": f.quarantined_to}
                for f in self.failed
            ],
            "all_lines_rejected": [
                {"file": f.source_file, "rejected": f.rejected, "reason": f.top_reject_reason}
                for f in self.all_rejected
            ],
            "per_file": [
                {
                    k: v
                    for k, v in asdict(f).items()
                    if k not in ("days", "error", "quarantined_to", "top_reject_reason")
                }
                for f in self.files
                if not f.error
            ],
        }


__all__ = ["FileReport", "IngestReport"]
