"""Checks against real tools a creator runs beside us, too large to install in the default CI
run (`make check-traces`: our traces in Arize Phoenix and MLflow)."""
