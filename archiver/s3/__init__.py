"""The S3 side: the store client (HEAD-before-PUT, verified uploads) and the object format (key
and metadata) shared by the pipeline, reconcile and the web archive.

Other parts import from here, not from `archiver.s3.store`.
"""

from archiver.s3.store import (
    CONTENT_TYPE,
    EMPTY_SEGMENT,
    METADATA_FIELDS,
    ConflictError,
    ObjectInfo,
    S3Store,
    StoredObject,
    StoreError,
    VerifyError,
    object_key,
    object_metadata,
)

__all__ = [
    "CONTENT_TYPE",
    "EMPTY_SEGMENT",
    "METADATA_FIELDS",
    "ConflictError",
    "ObjectInfo",
    "S3Store",
    "StoreError",
    "StoredObject",
    "VerifyError",
    "object_key",
    "object_metadata",
]
