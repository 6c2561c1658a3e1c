"""The response-rate limit of the DNS answers given in C
(csrc/datapath/rrl.h), on its own: bursts, refill, slip, and prefixes that
share a slot sharing one bucket."""
import pytest

from kni_gw.dataplane import ffi, lib

PASS, SLIP, DROP = lib.KG_RRL_PASS, lib.KG_RRL_SLIP, lib.KG_RRL_DROP


@pytest.fixture(autouse=True)
def eal(fib_tables):
    yield


def run(rate, slip, seq):
    """seq: (prefix key, time in microseconds) in order."""
    keys = ffi.new("unsigned long long[]", [k for k, _ in seq])
    us = ffi.new("unsigned long long[]", [t for _, t in seq])
    out = ffi.new("int[]", len(seq))
    assert lib.kg_rrl_test(rate, slip, keys, us, len(seq), out) == 0
    return list(out)


def test_a_seconds_worth_then_the_rate():
    out = run(10, 0, [(1, 0)] * 15)
    assert out == [PASS] * 10 + [DROP] * 5
    # 10/s: after 0.35 s, three more
    out = run(10, 0, [(1, 0)] * 10 + [(1, 350_000)] * 5)
    assert out == [PASS] * 10 + [PASS] * 3 + [DROP] * 2


def test_every_slip_th_one_over_the_limit_is_truncated():
    assert run(5, 2, [(1, 0)] * 11) == [PASS] * 5 + [DROP, SLIP] * 3
    assert run(5, 1, [(1, 0)] * 8) == [PASS] * 5 + [SLIP] * 3
    assert run(5, 3, [(1, 0)] * 11) == [PASS] * 5 + [DROP, DROP, SLIP] * 2


def test_prefixes_have_buckets_of_their_own():
    a = 1 << 8
    b = next(k << 8 for k in range(2, 1000) if lib.kg_rrl_slot(k << 8) != lib.kg_rrl_slot(a))
    assert run(5, 0, [(k, 0) for _ in range(5) for k in (a, b)]) == [PASS] * 10


def colliding():
    seen = {}
    for k in range(1, 100_000):
        s = lib.kg_rrl_slot(k << 8)
        if s in seen:
            return seen[s], k << 8
        seen[s] = k << 8
    raise AssertionError("no two prefixes share a slot among 100k")


def test_prefixes_that_share_a_slot_share_a_bucket():
    """Alternating between two prefixes of one slot never refills it: the
    pair gets one prefix's worth (an attacker cannot reset a victim's limit
    by asking from a colliding prefix in between)."""
    a, b = colliding()
    out = run(10, 0, [(k, 0) for _ in range(20) for k in (a, b)])
    assert out.count(PASS) == 10, out
    # a slot idle for a second's worth is a full bucket for a newcomer
    out = run(10, 0, [(a, 0)] * 10 + [(b, 1_000_000)] * 10)
    assert out == [PASS] * 20
