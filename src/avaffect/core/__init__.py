"""Infrastructure that knows nothing of emotions: atomic files, tables, logs, torch files, model files, venvs,
devices. Nothing heavy is imported at package level: the Spleeter venv imports `avaffect.core.files`."""
