"""Model I/O: where a family keeps its units (adapters), loading a model and its text, the built-in reference
model, token windows, perplexity, and writing the pruned model (export). Imports nothing else of strata."""
