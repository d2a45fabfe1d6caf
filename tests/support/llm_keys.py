"""The provider keys of the LLM layer's tests: each distinct, so a leak names its source."""

OPENAI_KEY = "sk-test-openai-7c1d5e9f0a2b4c6d"
ANTHROPIC_KEY = "sk-ant-test-3e8a1b7c9d2f4a6b"
MINIMAX_KEY = "mm-test-5b2c8d1e7f3a9c4d"
