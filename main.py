import bots
