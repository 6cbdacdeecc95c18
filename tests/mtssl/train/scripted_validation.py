"""``mtssl-train`` with scripted validation losses, for torchrun tests of early stopping (test_ddp.py).

Rank 0 (the one that validates) reports a relpos validation loss of 1.0 at step 1 and 2.0 from
step 2 on, so ``--early-stop 1`` stops relpos at step 2; the other ranks get what rank 0 decided.
"""

from __future__ import annotations

import os
import sys

import mtssl.train.loop as loop
from mtssl.train.cli import app


def scripted(net, val, seed, device):
    if os.environ.get("RANK", "0") != "0":  # only rank 0 validates, as in loop.train
        return {}
    scripted.calls += 1
    return {"val_relpos_loss": 1.0 if scripted.calls == 1 else 2.0, "val_relpos_acc": 0.5}


scripted.calls = 0

if __name__ == "__main__":
    loop.validate = scripted
    sys.exit(app())
