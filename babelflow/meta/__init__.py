"""Meta-learning across language pairs (FOMAML, Reptile, MAML) and the adapt experiment."""
from babelflow.meta.adapt import adapt_experiment
from babelflow.meta.algorithms import MetaLearner, inner_loop, meta_parameters
from babelflow.meta.train import meta_loop, meta_train

__all__ = ["MetaLearner", "inner_loop", "meta_parameters", "meta_loop", "meta_train", "adapt_experiment"]
