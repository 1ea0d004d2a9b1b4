"""The training objective shared by the trainer, meta-learning and adaptation."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from babelflow.specials import PAD_ID


def token_cross_entropy(logits: Tensor, tgt_out: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Label-smoothed cross-entropy, summed over non-pad target tokens (callers divide by tokens).

    A sum (not a mean) lets gradient accumulation and DDP divide by the true token count of the
    whole effective batch, so the update does not depend on how tokens fell into micro-batches.
    """
    return F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        tgt_out.reshape(-1),
        ignore_index=PAD_ID,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
