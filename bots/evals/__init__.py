"""Evals: pipeline bots against a baseline on a dataset, judged, throttled, kept and
reported."""
