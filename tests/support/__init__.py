"""Test support shared by the suites and the benchmarks: the loopback fake LLM server lives
in ``tests.support.fake_llm`` (import it from there; this package imports nothing, so
``python -m tests.support.fake_llm`` starts cleanly)."""
