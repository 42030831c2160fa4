"""Per-session flow control bookkeeping (docs/protocol.md section 4a).

A receiver grants its peer a budget for DATA with WINDOW(consumed, window): the peer may
send DATA until the cost of all it sent (wire.flow_cost per message) reaches consumed +
window. Limits only ever rise. Pure arithmetic: the caller sends the WINDOW packets this
returns and waits for room before sending DATA.
"""

from __future__ import annotations

from dataclasses import dataclass

from .wire import FLOW_INITIAL_WINDOW, FLOW_WINDOW, Window, flow_cost


class FlowViolationError(Exception):
    """The peer broke flow control: the session closes with FLOW_VIOLATION."""


@dataclass
class FlowControl:
    tx_sent: int = 0
    tx_limit: int = FLOW_INITIAL_WINDOW
    rx_recv: int = 0
    rx_consumed: int = 0
    rx_limit: int = FLOW_INITIAL_WINDOW
    rx_window: int = FLOW_INITIAL_WINDOW

    # ---- sending ----

    def can_send(self, length: int) -> bool:
        return self.tx_sent + flow_cost(length) <= self.tx_limit

    def sent(self, length: int) -> None:
        self.tx_sent += flow_cost(length)

    def on_window(self, msg: Window) -> None:
        if msg.consumed > self.tx_sent:
            raise FlowViolationError(f"WINDOW: peer consumed {msg.consumed}, more than the {self.tx_sent} sent")
        self.tx_limit = max(self.tx_limit, msg.consumed + msg.window)

    # ---- receiving ----

    def on_data(self, length: int) -> None:
        self.rx_recv += flow_cost(length)
        if self.rx_recv > self.rx_limit:
            raise FlowViolationError(f"DATA beyond the window: {self.rx_recv} of {self.rx_limit}")

    def _grant(self) -> Window:
        self.rx_limit = max(self.rx_limit, self.rx_consumed + self.rx_window)
        return Window(self.rx_consumed, self.rx_window)

    def open(self, window: int = FLOW_WINDOW) -> Window:
        """The application holds the session now: grant `window` (send the result)."""
        self.rx_window = window
        return self._grant()

    def consumed(self, length: int) -> Window | None:
        """The application read a message: a WINDOW to send once a quarter of the window was used."""
        self.rx_consumed += flow_cost(length)
        if self.rx_consumed + self.rx_window >= self.rx_limit + self.rx_window // 4:
            return self._grant()
        return None
