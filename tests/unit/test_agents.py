"""PEs' Faust agents take one batch at a time and never die of one."""

from __future__ import annotations

import faust
import pytest

from runtime.agents import BatchAgent


async def test_an_agent_returns_each_batch_s_result_and_survives_a_failing_batch() -> None:
    # No broker: Faust's consumer never runs, so its flow control stays paused; the
    # agent must take batches all the same.
    app = faust.App("agents-test", broker="kafka://127.0.0.1:1", store="memory://")
    taken: list[list[int]] = []

    async def handler(batch: list[int]) -> int:
        if not batch:
            raise ValueError("an empty batch")
        taken.append(batch)
        return sum(batch)

    agent = BatchAgent(app, "pipeline.pe.items", handler)
    assert list(app.agents) == ["pipeline.pe.items"]
    await agent.agent.start()
    try:
        assert await agent([1, 2]) == 3
        with pytest.raises(ValueError, match="an empty batch"):
            await agent([])
        assert await agent([4]) == 4
    finally:
        await agent.agent.stop()
    assert taken == [[1, 2], [4]]
