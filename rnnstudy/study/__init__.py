"""A study: experiments, their stages and T search, Optuna storages, workers, the sweep and its launchers."""
