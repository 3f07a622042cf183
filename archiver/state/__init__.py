"""What archiver remembers: the ledger of recordings, the catalogue of archived calls (searched by
`archiver web`), the access log (a hash chain), what each object's bytes should be (fixity),
the call log, legal holds and the destruction log, leases and request slots, in SQLite or
PostgreSQL behind one interface (`State`, from `open_state`). The schema is versioned
(`migrations/{sqlite,postgresql}/NNNN_*.sql`) and migrated at open.

Other parts import from here, not from the modules inside.
"""

from archiver.state.access import ACTIONS as ACCESS_ACTIONS
from archiver.state.access import AccessAction, AccessEvent, AccessLog, AccessOutcome
from archiver.state.aio import StateThreads, state_threads
from archiver.state.api import (
    BaseState,
    RequestGate,
    SqliteState,
    State,
    free_dead_local_leases,
    open_state,
    worker_id,
)
from archiver.state.backup import BackupRefused, backup_sqlite, migrated_snapshot
from archiver.state.calls import CallEvent, CallLog, CallSummary, EventKind, PlacedState
from archiver.state.catalogue import (
    COUNT_CAP,
    MAX_PAGE,
    SORTS,
    Catalogue,
    CatalogueEntry,
    DialPlan,
    InvalidQuery,
    PbxDialPlan,
    SearchPage,
    SearchQuery,
    catalogue_entry,
    number_key,
    search_number,
)
from archiver.state.chain import ChainBreak, ChainReport
from archiver.state.copy import TableCopy, copy_state
from archiver.state.db import StateFileError, StatementTimeout, StateUnavailable
from archiver.state.destructions import (
    Claim,
    Destruction,
    DestructionLog,
    DestructionRun,
    Reason,
)
from archiver.state.digits import DIRECTIONS
from archiver.state.fixity import Expected, Fixity
from archiver.state.holds import Hold, Holds
from archiver.state.ledger import FINAL_STATES, STATES, Ledger, LedgerEntry
from archiver.state.ledger import State as RecordingState
from archiver.state.migrate import SchemaTooNew, latest_version, open_database
from archiver.state.pg_state import connect_postgres
from archiver.state.pg_url import redact_url

__all__ = [
    "ACCESS_ACTIONS",
    "COUNT_CAP",
    "DIRECTIONS",
    "FINAL_STATES",
    "MAX_PAGE",
    "SORTS",
    "STATES",
    "AccessAction",
    "AccessEvent",
    "AccessLog",
    "AccessOutcome",
    "BackupRefused",
    "BaseState",
    "CallEvent",
    "CallLog",
    "CallSummary",
    "Catalogue",
    "CatalogueEntry",
    "ChainBreak",
    "ChainReport",
    "Claim",
    "Destruction",
    "DestructionLog",
    "DestructionRun",
    "DialPlan",
    "EventKind",
    "Expected",
    "Fixity",
    "Hold",
    "Holds",
    "InvalidQuery",
    "Ledger",
    "LedgerEntry",
    "PbxDialPlan",
    "PlacedState",
    "Reason",
    "RecordingState",
    "RequestGate",
    "SchemaTooNew",
    "SearchPage",
    "SearchQuery",
    "SqliteState",
    "State",
    "StateFileError",
    "StateThreads",
    "StateUnavailable",
    "StatementTimeout",
    "TableCopy",
    "backup_sqlite",
    "catalogue_entry",
    "connect_postgres",
    "copy_state",
    "free_dead_local_leases",
    "latest_version",
    "migrated_snapshot",
    "number_key",
    "open_database",
    "open_state",
    "redact_url",
    "search_number",
    "state_threads",
    "worker_id",
]
