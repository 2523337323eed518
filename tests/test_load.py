"""A load sweep's figures from its requests (harness.results.load), on requests written by hand with known times."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from harness.analysis.load import summarize_load
from harness.config.schema import HardwareConfig
from harness.results.load import LoadRequest

# one dollar-cent per second: costs are easy to check
HW = HardwareConfig(name="box", hourly_usd=3.6, power_w=100.0, memory_gb=16.0)


def _req(model: str, level: int, i: int, latency: float, out_tokens: int = 10) -> LoadRequest:
    return LoadRequest(model, level, i, f"s{i}", latency, latency / 4, 0.01, 100, out_tokens)


def test_throughput_percentiles_and_the_slo_price_point():
    rows = [_req("m", 1, i, 1.0) for i in range(4)] + [_req("m", 4, i, 3.0 + i) for i in range(4)]
    load = summarize_load(rows, {("m", 1, None): 4.0, ("m", 4, None): 7.0}, "t", 2.5, HW, {"m": None})
    one, four = load.models["m"].steps
    assert one.requests_per_s == pytest.approx(1.0) and four.requests_per_s == pytest.approx(4 / 7)
    assert four.latency_p50_s == pytest.approx(4.5) and four.latency_p95_s == pytest.approx(5.85)
    assert one.within_slo and not four.within_slo
    assert load.models["m"].slo_level == 1
    assert load.models["m"].cost_per_1k_at_slo_usd == pytest.approx(3.6 / 3600 / 1.0 * 1000)
    assert load.meets_slo("m") is True and load.meets_slo("other") is None


def test_hosted_models_are_priced_by_tokens():
    rows = [_req("h", 1, i, 1.0, out_tokens=50) for i in range(3)]
    load = summarize_load(rows, {("h", 1, None): 3.0}, "t", None, HW, {"h": (1.0, 4.0)})
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


# --- open loops, SLOs and goodput -------------------------------------------------------------------------------


def _open(i: int, latency: float, ttft: float, out_tokens: int = 11, rate: float = 2.0, error: str | None = None):
    return LoadRequest("m", 0, i, f"s{i}", latency, ttft, None, 100, out_tokens, 0, "poisson", rate, i * 0.5, i * 0.5)


def test_attainment_and_goodput_count_the_requests_meeting_every_threshold():
    from harness.analysis.load import summarize_step
    from harness.config.schema import SloConfig
    from harness.results.load import meets

    rows = [
        _open(0, 1.0, 0.2),  # TPOT (1.0 - 0.2) / 10 = 80 ms: meets all
        _open(1, 1.5, 0.2),  # e2e 1.5 > 1.2: misses
        _open(2, 1.1, 0.6),  # TTFT 0.6 > 0.5: misses
        _open(3, 0.9, 0.1, out_tokens=2),  # TPOT 0.8 > 0.1: misses
        _open(4, 0.8, 0.3),  # meets
    ]
    rows.append(replace(_open(5, 0.1, 0.05), error="server refused"))  # a failed request meets nothing
    slo = SloConfig(ttft_s=0.5, tpot_s=0.1, e2e_s=1.2, attainment=0.5)
    assert [meets(r, slo) for r in rows] == [True, False, False, False, True, False]
    step = summarize_step(rows, 4.0, slo, HW, None)
    assert step.attainment == pytest.approx(2 / 6) and step.within_slo is False
    assert step.goodput_rps == pytest.approx(2 / 4.0) and step.goodput_tokens_per_s == pytest.approx(22 / 4.0)
    assert step.requests_per_s == pytest.approx(5 / 4.0) and step.errors == 1  # finished requests only
    assert step.label == "2/s poisson" and step.offered == 2.0
    # p99 of 5 finished requests: too few to estimate (it needs 100); p50 and its interval are there
    e2e = step.percentiles["e2e"]
    assert e2e.too_few == ["p90", "p95", "p99"] and e2e.at(50) == pytest.approx(1.0)
    assert e2e.values["p50"].low <= 1.0 <= e2e.values["p50"].high


def test_percentiles_have_intervals_once_the_step_has_the_requests():
    from harness.analysis.load import term_percentiles

    values = [0.01 * i for i in range(1, 101)]
    p = term_percentiles(values)
    assert p.too_few is None and set(p.values) == {"p50", "p90", "p95", "p99"}
    assert p.at(99) == pytest.approx(float(np.percentile(values, 99)))
    assert all(iv.low <= iv.value <= iv.high for iv in p.values.values())
    assert term_percentiles(values[:20]).too_few == ["p99"]  # 20 requests: p95 (one beyond it), not p99


def test_the_edge_is_the_highest_rate_meeting_the_slo_and_prices_the_model():
    from harness.config.schema import SloConfig

    rows = [_open(i, 0.5, 0.1, rate=1.0) for i in range(4)] + [_open(i, 0.7, 0.1, rate=2.0) for i in range(4)]
    rows += [_open(i, 3.0, 2.0, rate=4.0) for i in range(4)]
    walls = {("m", 0, 1.0): 4.0, ("m", 0, 2.0): 2.0, ("m", 0, 4.0): 4.0}
    load = summarize_load(rows, walls, "t", SloConfig(e2e_s=1.0), HW, {"m": None})
    m = load.models["m"]
    assert [s.offered for s in m.steps] == [1.0, 2.0, 4.0] and [s.within_slo for s in m.steps] == [True, True, False]
    assert m.edge == 2.0 and m.slo_level is None  # an open loop's edge is a rate
    assert m.cost_per_1k_at_slo_usd == pytest.approx(3.6 / 3600 / 2.0 * 1000)
    load.expected_rate = 3.0
    assert load.meets_slo("m") is False  # the edge is below the rate the user expects
    load.expected_rate = 1.5
    assert load.meets_slo("m") is True


def test_a_poisson_schedule_has_exponential_gaps_and_a_constant_one_even_gaps():
    from scipy import stats

    from harness.run.load import send_times

    times = send_times("poisson", 5.0, 2000, seed=3)
    gaps = np.diff(times)
    assert times[0] == 0.0 and np.all(gaps > 0)
    assert stats.kstest(gaps, "expon", args=(0, 1 / 5.0)).pvalue > 0.01  # the gaps fit Exp(mean 1/rate)
    assert np.mean(gaps) == pytest.approx(0.2, rel=0.1)
    assert send_times("poisson", 5.0, 50, seed=3) == times[:50]  # seeded: the same schedule again
    assert send_times("poisson", 5.0, 50, seed=4) != times[:50]
    assert send_times("constant", 4.0, 4, seed=0) == [0.0, 0.25, 0.5, 0.75]


def test_an_open_loop_sends_on_schedule_whatever_is_in_flight_and_records_its_lag():
    """Answers taking 0.3 s at 20 requests/s: each sent on time (a closed loop would wait for answers); with only
    two outstanding allowed, the client falls behind its schedule and every request says by how much."""
    from harness.engines.base import Generation
    from harness.run.load import send_all, send_times

    def slow(i: int) -> Generation:
        time.sleep(0.3)
        return Generation("x", 1, 1, None, 0.3, 0.3, None)

    times = send_times("constant", 20.0, 10, seed=0)
    sent, wall = send_all(slow, times, max_outstanding=64)
    lags = [s.sent_s - s.scheduled_s for s in sent]
    assert max(lags) < 0.05 and wall < 0.45 + 0.3 + 0.1  # the last one sent at 0.45 s, answered 0.3 s later
    sent, wall = send_all(slow, times, max_outstanding=2)
    lags = [s.sent_s - s.scheduled_s for s in sent]
    # two at a time, 0.3 s each: the last is sent at about 1.25 s instead of 0.45 s; the step takes about 1.55 s
    assert 0.7 < lags[-1] < 1.1 and lags[2] > 0.15 and wall > 1.4
    assert all(s.generation is not None and s.error is None for s in sent)


def test_the_search_finds_the_edge_by_doubling_then_bisection():
    from harness.run.load import search_edge

    tried: list[float] = []

    def capacity(limit: float):
        def try_load(v: float) -> bool:
            tried.append(v)
            return v <= limit

        return try_load

    assert search_edge(capacity(5), 1, 10, lambda: True, 0.1, whole=True) == 5
    assert tried == [1, 2, 4, 8, 6, 5]
    tried.clear()
    edge = search_edge(capacity(3.3), 1.0, 12, lambda: True, 0.05)
    assert edge is not None and 3.3 * 0.95 <= edge <= 3.3 and tried[:3] == [1.0, 2.0, 4.0]
    tried.clear()
    assert search_edge(capacity(0.3), 1.0, 12, lambda: True, 0.1) == pytest.approx(0.3, rel=0.1)  # halving first
    assert search_edge(capacity(100), 1.0, 3, lambda: True, 0.1) == 4.0  # out of steps: the highest that passed
    assert search_edge(capacity(100), 1.0, 9, lambda: False, 0.1) is None  # no budget: nothing tried
