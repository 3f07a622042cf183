"""Audit and integrity: the court export (MP3s byte for byte, manifest.csv, export.txt), the
access log as people read it (local times, CSV), each day's last chain hash kept in the bucket,
and the re-reading of archived objects against the state (`archiver verify`).

Other parts import from here, not from the modules inside.
"""

from archiver.audit.anchors import (
    ANCHOR_PREFIX,
    AnchorLock,
    AnchorProblem,
    DayAnchor,
    check_anchors,
    write_anchors,
)
from archiver.audit.events import EVENT_COLUMNS, event_record, events_csv
from archiver.audit.export import (
    CaseReference,
    ExportRequest,
    ExportSummary,
    InvalidCase,
    export_text,
    write_export,
)
from archiver.audit.integrity import Finding, IntegrityReport, check_object, verify_objects
from archiver.audit.manifest import MANIFEST_COLUMNS, ManifestRow, manifest_csv

__all__ = [
    "ANCHOR_PREFIX",
    "EVENT_COLUMNS",
    "MANIFEST_COLUMNS",
    "AnchorLock",
    "AnchorProblem",
    "CaseReference",
    "DayAnchor",
    "ExportRequest",
    "ExportSummary",
    "Finding",
    "IntegrityReport",
    "InvalidCase",
    "ManifestRow",
    "check_anchors",
    "check_object",
    "event_record",
    "events_csv",
    "export_text",
    "manifest_csv",
    "verify_objects",
    "write_anchors",
    "write_export",
]
