"""`cmd=` on the wire: whatever pattern or folder the client is handed, it either refuses it before
any request is sent, or the PBX (the simulator, whose parser shares no code with the client)
receives exactly one `cmd` that is one of the two documented command shapes.

tests/test_pbx.py checks the command strings; this checks what the query string carries after
aiohttp's encoding, so no input can smuggle a second parameter or a shell metacharacter through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.config import PbxConfig
from archiver.lab.simulator import SimulatorOptions, SimulatorThread
from archiver.pbx.client import PbxClient, PbxError

PASSWORD = "Wire-Secret-1"
# Near-misses of the allow-list: name characters mixed with what a shell or a URL would treat
# specially, so both branches (refused, sent) are exercised often.
_NEAR = st.text(
    alphabet=st.sampled_from(list("AZaz09+*.-_ ;|&$`'\"<>()\\/\n%#=?~!")), min_size=1, max_size=70
)
INPUTS = st.one_of(
    st.text(max_size=80), _NEAR, st.from_regex(r"[A-Za-z0-9+*][A-Za-z0-9+*.-]{0,63}")
)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimulatorOptions(username="admin", password=PASSWORD, per_day=2)) as s:
        yield s


async def _send(url: str, value: str, kind: str) -> bool:
    """Return True if the simulator accepted the command, False if the client refused to send;
    raise if the simulator refused what the client sent."""
    cfg = PbxConfig(url=url, username="admin", password=PASSWORD)  # type: ignore[arg-type]
    client = PbxClient(cfg, PASSWORD)
    try:
        if kind == "find":
            await client.find(value)
        else:
            await client.list_files(value)
    except ValueError:
        return False
    finally:
        await client.close()
    return True


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=INPUTS, kind=st.sampled_from(["find", "list_files"]))
def test_cmd_on_the_wire_is_a_documented_shape(sim: SimulatorThread, value: str, kind: str) -> None:
    try:
        asyncio.run(_send(sim.base_url, value, kind))
    except PbxError as error:  # the simulator answers 403 to anything but a documented command
        raise AssertionError(f"{kind}({value!r}) reached the PBX as a refused command") from error


def test_both_branches_are_real(sim: SimulatorThread) -> None:
    assert asyncio.run(_send(sim.base_url, "20161118-*-100", "find")) is True
    assert asyncio.run(_send(sim.base_url, "trunk-sip-908502591905", "list_files")) is True
    assert asyncio.run(_send(sim.base_url, "x*; rm -rf /", "find")) is False
    assert asyncio.run(_send(sim.base_url, "a&cmd=reboot", "list_files")) is False
