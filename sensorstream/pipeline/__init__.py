"""What to compute: the Python builder and its YAML spec."""
