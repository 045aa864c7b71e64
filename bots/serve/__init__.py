"""The Poe-facing app: the `PoeBot`s, the gate in front of them, keys, logs and exported
traces. What `python -m bots serve` and Modal run."""
