"""The loss model: records (spec), the registry, and the losses themselves."""
