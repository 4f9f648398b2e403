"""Models, looked up by module name from the config (``config.model_name``)."""
