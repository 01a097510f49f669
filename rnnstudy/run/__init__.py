"""One run: its config, training, record, results store and sinks (W&B); the unit of truth."""
