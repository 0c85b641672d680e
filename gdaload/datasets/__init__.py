"""Datasets shipped with gdaload."""
