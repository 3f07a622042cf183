"""The lab: the PBX simulator, a local S3 (SeaweedFS), the chaos run and the demo. Never imported
by the product (only by `archiver simulate`, the tests and the scripts)."""
