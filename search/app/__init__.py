"""The application: the strata commands, the main run, its records, reports and tools (above the search)."""
