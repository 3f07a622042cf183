"""The archiving pipeline: list, download, transcode, upload, record. `daemon` alone knows the
order of the stages; reconcile rebuilds the ledger from the bucket."""
