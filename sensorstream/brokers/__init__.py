"""Connections to message brokers, shared by the sources, sinks and simulator that use them."""
