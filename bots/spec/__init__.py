"""The format: `pipelines.yaml` read, typed and checked completely at load.

No I/O beyond reading the file, and no asyncio or HTTP: what is here describes a bot; `run`
answers with it.
"""
