"""The engine: pure columnar operators over readings; no I/O, no clock."""
