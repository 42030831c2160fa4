"""Flow control bookkeeping (docs/protocol.md section 4a)."""

from __future__ import annotations

import pytest
from pooltools.protocol import wire
from pooltools.protocol.flow import FlowControl, FlowViolationError


def test_sender_stops_at_the_initial_window_and_resumes_on_window() -> None:
    f = FlowControl()
    n = 0
    while f.can_send(1000):
        f.sent(1000)
        n += 1
    assert n == wire.FLOW_INITIAL_WINDOW // wire.flow_cost(1000)
    f.on_window(wire.Window(consumed=f.tx_sent, window=wire.FLOW_WINDOW))
    assert f.can_send(1000)
    assert f.tx_limit == f.tx_sent + wire.FLOW_WINDOW


def test_limits_never_fall_and_overclaimed_consumption_is_a_violation() -> None:
    f = FlowControl()
    f.sent(100)
    f.on_window(wire.Window(consumed=0, window=1000))  # below the initial limit: ignored
    assert f.tx_limit == wire.FLOW_INITIAL_WINDOW
    with pytest.raises(FlowViolationError, match="more than"):
        f.on_window(wire.Window(consumed=f.tx_sent + 1, window=0))


def test_receiver_refuses_data_beyond_what_it_granted() -> None:
    f = FlowControl()
    f.on_data(wire.FLOW_INITIAL_WINDOW - wire.FLOW_MSG_COST)  # exactly the window
    with pytest.raises(FlowViolationError, match="beyond the window"):
        f.on_data(0)


def test_receiver_grants_after_a_quarter_of_the_window_is_read() -> None:
    f = FlowControl()
    grant = f.open(wire.FLOW_WINDOW)
    assert grant == wire.Window(0, wire.FLOW_WINDOW) and f.rx_limit == wire.FLOW_WINDOW
    size = 60_000
    granted_at = []
    for i in range(1, 200):
        f.on_data(size)
        g = f.consumed(size)
        if g is not None:
            granted_at.append(i)
            assert g.consumed == f.rx_consumed and f.rx_limit == g.consumed + g.window
    # one WINDOW per quarter window read, never one per message
    per_quarter = (wire.FLOW_WINDOW // 4 + wire.flow_cost(size) - 1) // wire.flow_cost(size)
    assert granted_at[0] == per_quarter
    assert len(granted_at) == 199 // per_quarter
