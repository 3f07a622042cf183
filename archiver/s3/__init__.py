"""The S3 side: the store client (HEAD-before-PUT, verified uploads) and the object format
(key, metadata and the way back from them to a recording) shared by the pipeline, reconcile and
the web archive.

Other parts import from here, not from the modules inside.
"""

from archiver.s3.objects import (
    CONTENT_TYPE,
    EMPTY_SEGMENT,
    METADATA_FIELDS,
    QUARANTINE_CONTENT_TYPE,
    QUARANTINE_SEGMENT,
    ArchivedAs,
    ObjectInfo,
    ObjectMetadata,
    Unmappable,
    map_object,
    object_key,
    object_metadata,
    quarantine_key,
)
from archiver.s3.store import (
    ConflictError,
    LockState,
    ObjectLock,
    ObjectMissing,
    ObjectReader,
    RangeNotSatisfiable,
    S3Store,
    StoredObject,
    StoreError,
    VerifyError,
)

__all__ = [
    "CONTENT_TYPE",
    "EMPTY_SEGMENT",
    "METADATA_FIELDS",
    "QUARANTINE_CONTENT_TYPE",
    "QUARANTINE_SEGMENT",
    "ArchivedAs",
    "ConflictError",
    "LockState",
    "ObjectInfo",
    "ObjectLock",
    "ObjectMetadata",
    "ObjectMissing",
    "ObjectReader",
    "RangeNotSatisfiable",
    "S3Store",
    "StoreError",
    "StoredObject",
    "Unmappable",
    "VerifyError",
    "map_object",
    "object_key",
    "object_metadata",
    "quarantine_key",
]
