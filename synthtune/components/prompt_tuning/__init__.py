"""Few-shot prompt tuning's pure parts: the verbalizer, gradient surgery beside the plain paired
update, and the real/synthetic combination strategies."""
