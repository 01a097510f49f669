"""The model: cells, tasks, initialisations, networks and the exact gradient probe; what a run trains and measures."""
