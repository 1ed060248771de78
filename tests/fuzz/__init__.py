"""Coverage-guided fuzz targets, run by `make fuzz` (not collected by pytest)."""
