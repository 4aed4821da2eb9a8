"""Developer tools: a runnable copy of the workflow, and the check of the library's layers."""
