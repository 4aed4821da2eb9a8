"""From model predictions to submissions: frame-level post-processing, fusion and its selection, submission files."""
