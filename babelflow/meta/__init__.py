"""Meta-learning across language pairs (FOMAML, Reptile, MAML). The adapt experiment that measures
the meta-learned init is its own package (babelflow.adapt): it reads meta's output, never its code."""
from babelflow.meta.algorithms import MetaLearner, inner_loop, meta_parameters
from babelflow.meta.train import meta_loop, meta_train

__all__ = ["MetaLearner", "inner_loop", "meta_parameters", "meta_loop", "meta_train"]
