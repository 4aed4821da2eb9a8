"""The workflow report: validation figures and run times per rule."""
