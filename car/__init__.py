"""The car: command line, configuration, policy, control loop, drive log, replay and simulation runs.

Never imports torch or shap at module level; the commands that need them import them lazily.
"""
