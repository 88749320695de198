"""Delivery of alert notifications: channels (Apprise URLs, Web Push) and the dispatcher that retries and records.

See docs/delivery.md for how failures are classified and how the dispatcher is wired into the service.
"""

from alerts.notify.base import Channel, DeliveryError, redact
from alerts.notify.dispatch import Dispatcher

__all__ = ["Channel", "DeliveryError", "Dispatcher", "redact"]
