"""The declared work item (pipelines/core/item.py) and span arithmetic (pipelines/core/spans.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.core import spans
from pipelines.core.item import ItemContractError
from pipelines.core.stage import Stage


def test_an_undeclared_key_fails_when_the_class_is_defined():
    with pytest.raises(ItemContractError, match="speeches"):
        class Typo(Stage):  # noqa: F841
            name = "typo"
            writes = ("speeches",)


@pytest.mark.parametrize("wrote, why", [({}, "has none"), ({"speech": "1-2"}, "wrote 'speech' as str")])
def test_a_missing_or_mistyped_write_is_a_bug_not_the_datas_fault(wrote, why):
    class Vad(Stage):
        name = "vad_probe"
        writes = ("speech",)
        transient_retries = 0

        def process(self, item):
            item.update(wrote)
            return item

    out = Vad()({"uri": "x", "status": "ok", "rejections": []})
    assert out["status"] == "retry" and out["retry"]["kind"] == "error"
    assert out["retry"]["reason"] == "ItemContractError" and why in out["retry"]["detail"]
    assert out["rejections"] == []


def test_a_stage_may_declare_keys_of_its_own():
    class Own(Stage):
        name = "own_probe"
        item_fields = {"probe_value": (int,)}
        writes = ("probe_value",)

        def process(self, item):
            item["probe_value"] = 3
            return item

    assert Own()({"uri": "x", "status": "ok", "rejections": []})["status"] == "ok"


span_lists = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)).map(lambda t: (t[0] / 2, t[1] / 2)),
                      max_size=8)


def _covered(sp, t):
    return any(s <= t <= e for s, e in sp if e > s)


@given(span_lists, span_lists)
def test_span_algebra_agrees_with_pointwise_membership(a, b):
    u, i, d = spans.union(a), spans.intersect(a, b), spans.subtract(a, b)
    for seq in (u, i, d):
        assert all(s < e for s, e in seq) and all(x[1] < y[0] for x, y in zip(seq, seq[1:]))
    for k in range(1, 120):  # midpoints of the quarter-second grid, never an endpoint
        t = k / 4 - 0.125
        assert spans.contains(u, t) == _covered(a, t)
        assert spans.contains(i, t) == (_covered(a, t) and _covered(b, t))
        assert spans.contains(d, t) == (_covered(a, t) and not _covered(b, t))
    assert spans.total(a) == pytest.approx(sum(e - s for s, e in u))
