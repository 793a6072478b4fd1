"""The group chat wiring the agents, model-client loading, runners and the worker. Issue 4."""
