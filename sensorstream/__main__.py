"""``python -m sensorstream``: the same as the ``sensorstream`` command."""

from sensorstream.cli import app

if __name__ == "__main__":
    app(prog_name="sensorstream")
