"""SynAlign's pure parts: GP max-variance sampling, coverage, attribute prompts, weighted MMD and
learned sample weights."""
