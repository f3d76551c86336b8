"""Joins: two streams paired by key and time (:mod:`.streams`), a stream and a table."""
