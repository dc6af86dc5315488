"""What the graph's decision nodes call: classifier, routing rules, guardrails, model."""
