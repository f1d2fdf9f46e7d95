"""Built-in reference model: a Llama-architecture LM of Python source, trained on the standard library."""
