"""The evaluation harness behind ``gdaload quickstart`` and ``gdaload evaluate``."""
