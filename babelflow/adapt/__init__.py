"""Adaptation to a held-out low-resource pair: fine-tune the scratch, transfer and meta-learned inits
on K examples and score them (the adapt stage). Reads the train and meta stages' saved models, not
their code, so editing how adaptation is run or reported never re-runs meta-training."""
from babelflow.adapt.experiment import INITS, adapt_experiment, curve_rows, plot_curve, run_key
from babelflow.adapt.finetune import dev_scorer, finetune, finetune_init, pick_k

__all__ = ["INITS", "adapt_experiment", "curve_rows", "plot_curve", "run_key", "dev_scorer", "finetune",
           "finetune_init", "pick_k"]
