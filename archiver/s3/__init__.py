"""The S3 side: the store client (HEAD-before-PUT, verified uploads) and the object format (key
and metadata) shared by the pipeline, reconcile and the web archive."""
