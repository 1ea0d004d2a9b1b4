"""The clean stage's library: normalisers, per-pair filters, the streaming cleaner and its report."""
from babelflow.clean.normalize import normalize
from babelflow.clean.pipeline import clean_corpus, filter_order
from babelflow.clean.report import to_markdown

__all__ = ["clean_corpus", "filter_order", "normalize", "to_markdown"]
