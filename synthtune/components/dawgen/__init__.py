"""DawGen's pure parts: per-label generator prompts, the token-weight net Φ_W, the weighted
generation / discrimination / distance losses, and the functional one-step lookahead."""
