"""What archiver remembers: the ledger of recordings and the call log (one SQLite file)."""
