"""The creator's offline tools: the terminal chat, simulated and scripted bots, one message
answered away from Poe, pipeline tests and graphs."""
