"""babelflow: raw multilingual text to released, reproducible machine-translation models."""

__version__ = "0.1.0"
