"""What people do about alerts: acknowledgements and silences, kept beside the store.

A SQLite file next to the DuckDB store (:mod:`.actions_file`) holds them, so they can be
written while a pipeline runs and holds the store. :mod:`.alert_actions` records and reads
acknowledgements and silences; :mod:`.silences` says what a silence matches and keeps a
running pipeline's sinks up to date with them. Sinks read silences to mute notifications;
the store and the CLI show and change them.
"""
