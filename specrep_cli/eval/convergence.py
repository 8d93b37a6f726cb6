"""Whether training had stopped improving: the loss trend over the last epochs, in a graph's report.

    section = convergence(losses)   # losses: each epoch's mean loss (report.metrics.read_epoch_losses)

On a graph the optimum is known, and the spectral loss is the Eckart-Young error ||K - U U^T||_F^2
less the constant ||K||_F^2 (HaoChen et al. 2021): while the loss still falls, the learned subspace
is still moving towards the top-d eigenspace, and the alignment would be higher with more steps. The
run is called not converged when the mean loss of its last epoch is below that of the epoch a
quarter of the run earlier by more than STILL_FALLING of its whole fall (first epoch to lowest). A loss
against a moving target (an EMA network, a running second moment: spectral_byol, byol, pca with
penalty_estimate=ema) is not judged: its value drifts with the target.
"""
from __future__ import annotations

from typing import Any, Dict, List

STILL_FALLING = 0.02    # the last quarter's fall, as a share of the whole run's fall, above which it is still falling
MIN_EPOCHS = 4          # fewer epochs: no trend to read


def convergence(losses: List[float], moving_target: bool = False) -> Dict[str, Any]:
    """{"converged": bool, "losses": the epoch means at the first epoch, a quarter back from the end
    and the last, "last_quarter_share": the last quarter's fall over the whole fall, "warning": a line
    when not converged}; {"converged": None, "why": ...} with too few epochs, or when the loss has a
    moving target (objectives.methods.Method.moving_target: its value is not a fixed function of phi)."""
    n = len(losses)
    if moving_target:
        return {"converged": None, "why": "the loss compares phi with a target carried over from earlier steps "
                                          "(an EMA network or a running second moment): its trend is not the "
                                          "distance to the optimum"}
    if n < MIN_EPOCHS:
        return {"converged": None, "why": f"{n} epoch(s) of losses: at least {MIN_EPOCHS} give a trend"}
    back = n - 1 - max(1, n // 4)
    whole = losses[0] - min(losses)
    recent = losses[back] - losses[-1]
    share = recent / whole if whole > 0 else 0.0
    section: Dict[str, Any] = {
        "converged": share <= STILL_FALLING, "last_quarter_share": share,
        "losses": {"epoch 1": losses[0], f"epoch {back + 1}": losses[back], f"epoch {n}": losses[-1]}}
    if not section["converged"]:
        section["warning"] = (
            f"not converged: the loss still fell by {100 * share:.1f} % of its whole fall over the last "
            f"{n - 1 - back} of {n} epochs ({losses[back]:.4g} at epoch {back + 1}, {losses[-1]:.4g} at epoch {n}), "
            "so the subspace is still moving towards the truth: train longer (trainer.epochs) or faster (optim.lr)")
    return section
