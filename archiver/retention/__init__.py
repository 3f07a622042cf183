"""The archive's lifecycle: retention rules, periodic destruction, legal holds, erasure and
access requests (KVKK, GDPR, MiFID II; see README "Retention, holds and requests").

- `Rules` judges which `[[retention]]` rule covers a call and when it is due;
- `plan_retention` / `plan_erasure` say what a run or a request would destroy and what it keeps
  (held, too young for its rule's min_days, locked in the store), before anything is done;
- `execute` destroys a plan one recording at a time, all or nothing per recording, and records
  the run; a killed run is finished by the next (`archiver.state.DestructionLog`);
- `add_hold` / `release_hold` keep the store's S3 legal holds in step with the holds;
- `export_number` writes an access request's zip; `upload_lock` is what an upload carries;
- `destroy_periodically` is `archiver run`'s destruction every `[destruction] every_days`.

Uses state, s3 and config; the commands (archiver/commands/), `archiver run` and the web use
it through this face.
"""

from archiver.retention.destroy import Failed, Kept, Outcome, Target
from archiver.retention.export import MANIFEST_COLUMNS, ExportResult, export_number
from archiver.retention.holding import HoldResult, add_hold, release_hold
from archiver.retention.inputs import BadInput, confirm, number_key_of, reference
from archiver.retention.lock import upload_lock
from archiver.retention.periodic import (
    DAEMON_COMMAND,
    Schedule,
    destroy_periodically,
    schedule,
)
from archiver.retention.plan import Plan, plan_erasure, plan_retention
from archiver.retention.rules import Rules, Verdict, direction_of
from archiver.retention.run import DestroyedCounter, RunResult, execute, record_stopped, username

__all__ = [
    "DAEMON_COMMAND",
    "MANIFEST_COLUMNS",
    "BadInput",
    "DestroyedCounter",
    "ExportResult",
    "Failed",
    "HoldResult",
    "Kept",
    "Outcome",
    "Plan",
    "Rules",
    "RunResult",
    "Schedule",
    "Target",
    "Verdict",
    "add_hold",
    "confirm",
    "destroy_periodically",
    "direction_of",
    "execute",
    "export_number",
    "number_key_of",
    "plan_erasure",
    "plan_retention",
    "record_stopped",
    "reference",
    "release_hold",
    "schedule",
    "upload_lock",
    "username",
]
