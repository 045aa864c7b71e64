"""The product's picture of Poe, on 127.0.0.1, shared by the tests and the benchmark.

- `poe`: the stand-in for Poe's bot query API, built from real fastapi_poe bots, as strict as
  Poe's published rules (each rule quoted where it is enforced);
- `user`: Poe in front of a server bot under test: queries, chats, replies read as Poe reads
  them;
- `serving`: servers on loopback (an app, a command's own process, pipelines in front of the
  stand-in);
- `collector`: an OTLP/HTTP trace receiver that decodes what the exporter sends.

Not shipped: Modal's image holds `bots/` only.
"""
