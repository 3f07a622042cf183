"""What archiver remembers: the ledger of recordings, the call log, leases and request slots,
in SQLite or PostgreSQL behind one interface (`State`, from `open_state`).

Other parts import from here, not from the modules inside.
"""

from archiver.state.api import (
    BaseState,
    RequestGate,
    SqliteState,
    State,
    free_dead_local_leases,
    open_state,
    worker_id,
)
from archiver.state.calls import CallEvent, CallLog, CallSummary, EventKind, PlacedState
from archiver.state.db import StateFileError, StateUnavailable
from archiver.state.ledger import FINAL_STATES, STATES, Ledger, LedgerEntry
from archiver.state.ledger import State as RecordingState

__all__ = [
    "FINAL_STATES",
    "STATES",
    "BaseState",
    "CallEvent",
    "CallLog",
    "CallSummary",
    "EventKind",
    "Ledger",
    "LedgerEntry",
    "PlacedState",
    "RecordingState",
    "RequestGate",
    "SqliteState",
    "State",
    "StateFileError",
    "StateUnavailable",
    "free_dead_local_leases",
    "open_state",
    "worker_id",
]
