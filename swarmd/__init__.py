"""swarmd: a single-host daemon that runs swarms of LLM agents from a durable SQLite queue."""

__version__ = "0.1.0"
