"""Joins: records enriched from a table, and two streams paired in event time.

- :mod:`~sensorstream.engine.joins.tables`: a stream joined with a table (a reference table
  loaded from outside, or a table step over a changelog stream), latest or as of each
  record's time, with a policy for keys the table lacks; and the table step itself;
- :mod:`~sensorstream.engine.joins.streams`: two streams paired by key within a time
  interval or a window (``pairs.py`` pairs the rows, ``rounds.py`` keeps the watermarks a
  round of two inputs needs).
"""
