"""``python -m sensorstream``: the same as the ``sensorstream`` command."""

from sensorstream.cli import app

app(prog_name="sensorstream")
