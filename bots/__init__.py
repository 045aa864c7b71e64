"""Poe server bots built from pipelines.yaml: load and validate the file, run each bot's
pipeline by calling other Poe bots, and merge their streams into one reply."""
