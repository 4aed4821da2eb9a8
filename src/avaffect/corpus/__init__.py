"""The challenge: its tasks and labels, the Aff-Wild2 layout on disk, annotations, sample sets, metrics, and the
demo and scale corpora."""
