"""Processing received instances: selection, the model, result objects, worker processes and scheduling."""
