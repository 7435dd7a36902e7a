"""Every registered PE keeps the contract of pipelines.contract, in memory: the
built-in ones and the example of docs/extending.md (examples/language.py), whose
topology registers it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pe.registry import pe_specs
from pipelines.contract import check_pe, sample_logs
from pipelines.topology import Topology, load_topology

TOPOLOGY = load_topology(str(Path(__file__).parents[2] / "examples" / "language.yaml"))


@pytest.fixture(scope="module")
def logs() -> dict[str, list[bytes]]:
    return asyncio.run(sample_logs(TOPOLOGY))


@pytest.mark.parametrize("pe", [spec.name for spec in pe_specs()])
async def test_the_pe_keeps_the_contract(pe: str, logs: dict[str, list[bytes]]) -> None:
    topology = TOPOLOGY
    if pe not in topology.pes:  # registered by a module another test imported
        topology = Topology.model_validate(
            {**TOPOLOGY.model_dump(mode="json"), "pes": [*TOPOLOGY.pes, pe]}
        )
    await check_pe(topology, pe, logs)
