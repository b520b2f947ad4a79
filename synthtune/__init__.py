"""synthtune: learn to generate targeted synthetic training data with a frozen LLM."""

__version__ = "0.1.0"
