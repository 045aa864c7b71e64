"""The studio (`python -m bots studio`): a local web page to chat with the file's bots as Poe's
users will see them, through the same app `serve` runs, and to look inside each message (its
trace, calls, what each dependency was sent and answered, the pipeline drawn), reloading on
every save. Serving on Modal never imports it."""
