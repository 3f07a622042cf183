"""`archiver call`: place an automatic call through the PBX. The call is logged before the
request is sent (so a callback that beats the reply still finds it), then whether the PBX
accepted it. Exit codes as for every command: 0 done, 1 bad input or configuration, 5 the PBX
could not be reached or refused."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from archiver.commands._shared import call_row, when
from archiver.config import Config, PbxConfig, config_path, load_config
from archiver.exits import EXIT_CONFIG, EXIT_OK, EXIT_UNREACHABLE

if TYPE_CHECKING:
    from archiver.calls import AutocallRequest

__all__ = ["add_parser"]


def _bounded(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low}..{high}, got {value}")
        return value

    return parse


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    call = sub.add_parser("call", parents=[common], help="place an automatic call (autocalls.cgi)")
    call.add_argument("number", help="e.g. 903123320404, +903123320404 or 03123320404")
    call.add_argument("--pbx", help="which PBX (default: autocall.pbx, then the first)")
    call.add_argument("--max-retries", type=_bounded(0, 10), metavar="N", help="mr")
    call.add_argument("--retry-interval", type=_bounded(1, 86400), metavar="S", help="rt")
    call.add_argument("--dp", type=_bounded(0, 9999), metavar="N")
    call.add_argument("--dest", type=_bounded(0, 9999), metavar="N")
    call.add_argument("--detail", metavar="TEXT", help="passed through (A-Z a-z 0-9 _.,:@+- space)")
    call.add_argument("--at", type=when, metavar="DATETIME", help="PBX local time (default: now)")
    call.add_argument("--json", action="store_true")
    call.set_defaults(handler=_cmd_call)


def _cmd_call(args: argparse.Namespace) -> int:
    from archiver.calls import build_request
    from archiver.calls import pbx_datetime as to_pbx_datetime

    cfg = load_config(config_path(args.config))
    name = args.pbx or cfg.autocall.pbx or cfg.pbx[0].name
    pbx = cfg.pbx_named(name)  # an unknown name: UnknownPbx, one line and exit 2 (cli.main)
    tz = ZoneInfo(pbx.timezone)
    now = datetime.now(tz)
    try:
        request = build_request(
            args.number,
            cfg.autocall,
            max_retries=args.max_retries,
            retry_interval_s=args.retry_interval,
            dp=args.dp,
            dest=args.dest,
            detail=args.detail,
            datetime_param=to_pbx_datetime(args.at, tz, now=now),
        )
    except ValueError as error:  # InvalidNumber included: its text is its reason
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    at: datetime | None = args.at
    dial_at = now if at is None else (at if at.tzinfo else at.replace(tzinfo=tz))
    return asyncio.run(_place(cfg, pbx, request, dial_at.timestamp(), as_json=args.json))


async def _place(
    cfg: Config, pbx: PbxConfig, request: AutocallRequest, dial_at: float, *, as_json: bool
) -> int:
    from archiver.credentials import pbx_password
    from archiver.pbx import PbxClient, PbxError
    from archiver.state import open_state

    state = open_state(cfg)
    calls = state.calls
    try:
        call_id = calls.begin(pbx.name, request.number, request.params(), dial_at=dial_at)
        client = PbxClient(pbx, pbx_password(pbx))
        try:
            reply = await client.place_call(request.params())
        except PbxError as error:
            calls.finish_placing(call_id, accepted=False, reply=error.reason)
            print(f"error: {error.reason}", file=sys.stderr)
            return EXIT_UNREACHABLE
        finally:
            await client.close()
        calls.finish_placing(call_id, accepted=True, reply=reply)
        summary = calls.get(call_id)
    finally:
        state.close()
    if as_json and summary is not None:
        print(json.dumps(call_row(summary), indent=2))
    else:
        print(f"call {call_id}: {request.number} via {pbx.name} placed (PBX said: {reply or '-'})")
    return EXIT_OK
