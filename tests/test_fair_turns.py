"""Turns in rotation by key: no key waits behind another's whole line."""

from __future__ import annotations

from exporter.collect.fair_turns import FairTurns


def test_keys_take_turns_in_rotation_and_a_key_takes_one_turn_at_a_time() -> None:
    turns: FairTurns[str, str] = FairTurns()
    for n in range(3):
        turns.put("slow", f"slow {n}")
    turns.put("healthy", "healthy 0")
    assert turns.take(0.0) == ("slow", "slow 0")
    # the slow key is taking its turn: the healthy one goes next, not slow 1
    assert turns.take(0.0) == ("healthy", "healthy 0")
    assert turns.take(0.0) is None
    turns.release("slow")
    turns.release("healthy")
    turns.put("healthy", "healthy 1")
    assert turns.take(0.0) == ("slow", "slow 1")
    turns.release("slow")
    assert turns.take(0.0) == ("healthy", "healthy 1")
    assert len(turns) == 1
    assert turns.taking == 1


def test_an_item_set_aside_joins_its_line_when_due() -> None:
    turns: FairTurns[str, str] = FairTurns()
    turns.put("a", "later", at=5.0)
    assert turns.next_due() == 5.0
    assert turns.take(4.9) is None
    assert turns.take(5.0) == ("a", "later")
    assert turns.next_due() is None
    assert len(turns) == 0
