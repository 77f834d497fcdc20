"""Sending results to their destinations with C-STORE, with retries until delivered."""

from dicomnode.dispatch.dispatcher import Dispatcher, DispatchReport

__all__ = ["DispatchReport", "Dispatcher"]
