"""Scenario generation: reproducible by seed, real numbers, each attack shaped as described."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from app.rules.facts import number_facts
from app.simulator.scenarios import SCENARIOS, generate


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_seed_gives_the_same_attempts(scenario: str) -> None:
    first = generate(scenario, duration=30, rate=5, seed=7)
    again = generate(scenario, duration=30, rate=5, seed=7)
    assert first == again
    assert first != generate(scenario, duration=30, rate=5, seed=8)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_attempts_are_timed_within_the_run_and_sorted(scenario: str) -> None:
    attempts = generate(scenario, duration=30, rate=5, seed=1)
    times = [a.at for a in attempts]
    assert times == sorted(times)
    assert all(0 <= t < 30 for t in times)
    assert all(a.price > 0 for a in attempts)


def test_every_number_is_valid_for_libphonenumber() -> None:
    attempts = generate("mixed", duration=60, rate=10, seed=3)
    assert all(number_facts(a.number).valid for a in attempts)


def test_normal_traffic_is_legit_mobile_from_at_least_ten_countries() -> None:
    attempts = generate("normal", duration=60, rate=10, seed=1)
    facts = [number_facts(a.number) for a in attempts]
    assert {a.label for a in attempts} == {"legit"}
    assert len({f.country for f in facts}) >= 10
    assert {f.number_type for f in facts} <= {"mobile", "fixed_line_or_mobile"}


def test_attacks_run_over_normal_traffic_and_are_labelled_fraud() -> None:
    attempts = generate("mixed", duration=60, rate=10, seed=1)
    labels = {(a.scenario, a.label) for a in attempts}
    assert labels == {
        ("normal", "legit"),
        ("bunched", "legit"),
        ("surge", "legit"),
        ("range-pumping", "fraud"),
        ("number-abuse", "fraud"),
        ("slow-pumping", "fraud"),
        ("distributed-pumping", "fraud"),
    }


def test_bunched_sign_ups_fill_a_handful_of_blocks_at_hundreds_an_hour() -> None:
    attempts = [
        a for a in generate("bunched", duration=600, rate=5, seed=4) if a.scenario == "bunched"
    ]
    blocks = Counter(a.number[:-3] for a in attempts)
    assert len(blocks) == 5
    # 300 to 900 an hour each: 50 to 150 in ten minutes (first attempts; retries on top).
    assert all(40 <= count <= 200 for count in blocks.values())
    assert {a.label for a in attempts} == {"legit"}
    verified = sum(a.outcome.status == "SUCCESSFUL" for a in attempts) / len(attempts)
    assert 0.75 <= verified <= 0.95


def test_surge_is_ten_times_one_countrys_rate_for_minutes() -> None:
    attempts = generate("surge", duration=1000, rate=5, seed=2)
    surge = [a for a in attempts if a.scenario == "surge"]
    country = {number_facts(a.number).country for a in surge}
    assert len(country) == 1
    start, end = min(a.at for a in surge), max(a.at for a in surge)
    assert 300 <= start < 310 and 590 < end <= 620  # 30 % of the run on, 5 minutes (+ retries)
    normal_there = [
        a for a in attempts if a.scenario == "normal" and number_facts(a.number).country in country
    ]
    during = sum(1 for a in normal_there if start <= a.at <= end)
    assert 6 * during <= len(surge) <= 12 * during


def test_distributed_pumping_keeps_every_block_under_a_few_an_hour() -> None:
    pumped = [
        a
        for a in generate("distributed-pumping", duration=900, rate=5, seed=1)
        if a.label == "fraud"
    ]
    assert len(pumped) >= 700  # one a second
    assert len({number_facts(a.number).country for a in pumped}) == 1
    blocks = Counter(a.number[:-3] for a in pumped)
    assert max(blocks.values()) <= 4
    assert sum(a.outcome.status == "SUCCESSFUL" for a in pumped) <= 0.03 * len(pumped)


def test_range_pumping_walks_consecutive_numbers_of_few_blocks() -> None:
    pumped = [
        a for a in generate("range-pumping", duration=60, rate=10, seed=2) if a.label == "fraud"
    ]
    numbers = [int(a.number[1:]) for a in pumped]
    consecutive = sum(1 for a, b in itertools.pairwise(numbers) if 0 < abs(b - a) <= 3)
    assert consecutive >= len(numbers) * 0.8
    assert len({a.number[:9] for a in pumped}) <= 6
    assert len(set(numbers)) == len(numbers)


def test_number_abuse_hammers_one_number() -> None:
    abuse = [
        a for a in generate("number-abuse", duration=60, rate=10, seed=4) if a.label == "fraud"
    ]
    assert len(abuse) > 20
    assert len({a.number for a in abuse}) == 1


def test_slow_pumping_trickles_random_numbers_of_one_small_country() -> None:
    slow = [
        a for a in generate("slow-pumping", duration=300, rate=10, seed=5) if a.label == "fraud"
    ]
    countries = {number_facts(a.number).country for a in slow}
    assert len(countries) == 1
    assert countries <= {"SB", "FJ", "MV", "LR", "MR"}
    assert len({a.number for a in slow}) == len(slow)
    assert len({a.number[:9] for a in slow}) > len(slow) / 2
    assert len(slow) < 300 / 2


def test_fraud_almost_never_verifies_and_legit_mostly_does() -> None:
    attempts = generate("mixed", duration=120, rate=10, seed=6)

    def verified(label: str) -> float:
        group = [a for a in attempts if a.label == label]
        return sum(a.outcome.status == "SUCCESSFUL" for a in group) / len(group)

    assert verified("legit") > 0.75
    assert verified("fraud") < 0.05


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        generate("ddos", duration=1, rate=1, seed=1)
