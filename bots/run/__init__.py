"""Answering one user message: the engine walks a bot's steps, calls dependency bots through
the budget guard, and merges their streams into one reply of Poe events."""
