"""Prometheus metrics: collected from the store, rendered as text, exported to a file or port."""
