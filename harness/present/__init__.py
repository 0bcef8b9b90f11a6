"""Presentation: text and JSON rendering, the report, recommendations, the command line."""
