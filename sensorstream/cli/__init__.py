"""The ``sensorstream`` command line; ``app`` is the console script's entry point.

- :mod:`~sensorstream.cli.commands`: the commands, each importing what it needs when run;
- :mod:`~sensorstream.cli.demo`: ``demo``: a scenario of :mod:`sensorstream.scenarios`, or
  the generic fleet;
- :mod:`~sensorstream.cli.running`: running a spec from a command (console, exit, options);
- :mod:`~sensorstream.cli.failures`: exit codes, and one ``error:`` line per bad value;
- :mod:`~sensorstream.cli.specs`: the pipelines the CLI defines (a replay's, the demo's);
- :mod:`~sensorstream.cli.inference`: the measurements of a file, from its first lines;
- :mod:`~sensorstream.cli.execute`: running with progress, Ctrl-C and an early warning;
- :mod:`~sensorstream.cli.summary`: the closing table, warnings and the exit code;
- :mod:`~sensorstream.cli.output`: ``query`` output as a table, CSV, JSON or NDJSON.
"""

from __future__ import annotations

from sensorstream.cli.commands import app

__all__ = ["app"]
