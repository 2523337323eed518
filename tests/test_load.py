"""A load sweep's figures from its requests (harness.results.load), on requests written by hand with known times."""

from __future__ import annotations

import pytest

from harness.config.schema import HardwareConfig
from harness.results.load import LoadRequest, summarize_load

# one dollar-cent per second: costs are easy to check
HW = HardwareConfig(name="box", hourly_usd=3.6, power_w=100.0, memory_gb=16.0)


def _req(model: str, level: int, i: int, latency: float, out_tokens: int = 10) -> LoadRequest:
    return LoadRequest(model, level, i, f"s{i}", latency, latency / 4, 0.01, 100, out_tokens)


def test_throughput_percentiles_and_the_slo_price_point():
    rows = [_req("m", 1, i, 1.0) for i in range(4)] + [_req("m", 4, i, 3.0 + i) for i in range(4)]
    load = summarize_load(rows, {("m", 1): 4.0, ("m", 4): 7.0}, "t", 2.5, HW, {"m": None})
    one, four = load.models["m"].steps
    assert one.requests_per_s == pytest.approx(1.0) and four.requests_per_s == pytest.approx(4 / 7)
    assert four.latency_p50_s == pytest.approx(4.5) and four.latency_p95_s == pytest.approx(5.85)
    assert one.within_slo and not four.within_slo
    assert load.models["m"].slo_level == 1
    assert load.models["m"].cost_per_1k_at_slo_usd == pytest.approx(3.6 / 3600 / 1.0 * 1000)
    assert load.meets_slo("m") is True and load.meets_slo("other") is None


def test_hosted_models_are_priced_by_tokens():
    rows = [_req("h", 1, i, 1.0, out_tokens=50) for i in range(3)]
    load = summarize_load(rows, {("h", 1): 3.0}, "t", None, HW, {"h": (1.0, 4.0)})
    step = load.models["h"].steps[0]
    assert step.cost_per_1k_usd == pytest.approx((100 * 1.0 + 50 * 4.0) / 1e6 * 1000)
    assert load.models["h"].cost_basis == "tokens" and load.meets_slo("h") is None and step.within_slo is None


def test_a_hosted_cell_is_priced_by_the_tokens_it_used():
    from harness.results.cost import economics

    hw = HW
    hosted = economics(4, 10.0, [2.5] * 4, None, None, hw, (0.15, 0.60), (4000, 400))
    assert hosted.cost_per_1k_usd == pytest.approx((4000 * 0.15 + 400 * 0.60) / 1e6 / 4 * 1000)
    assert hosted.cost_basis == "tokens"
    timed = economics(4, 10.0, [2.5] * 4, None, None, hw)
    assert timed.cost_per_1k_usd == pytest.approx(3.6 * 2.5 / 3600 * 1000) and timed.cost_basis is None
