from services.runtime.memo import BoundedMemo


def test_a_memo_keeps_its_bound_and_starts_afresh_when_full():
    memo: BoundedMemo[str, int] = BoundedMemo(3)
    for i, k in enumerate("abc"):
        assert memo.keep(k, i) == i
    assert memo == {"a": 0, "b": 1, "c": 2}
    memo.keep("b", 9)  # a known key is replaced, nothing dropped
    assert memo == {"a": 0, "b": 9, "c": 2}
    assert memo.keep("d", 3) == 3  # a new key when full: the rest goes
    assert memo == {"d": 3}
    assert memo.get("a") is None
