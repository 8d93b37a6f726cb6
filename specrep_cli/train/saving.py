"""Writing a run's checkpoints: never a non-finite state (it would replace the last good checkpoint
with NaN weights), and a write that fails (a full disk) says how to resume.

    save_checkpoint(run.ckpt_dir / "last.pt", ckpt)   # the loop's only way to write a checkpoint

The finiteness check is one host sync per checkpoint, at save time only (every weight, the
objective's state and the optimizer's, on their device).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from .. import checkpoint
from ..errors import CheckpointError, TrainingError
from .stop import resume_command


def save_checkpoint(path: Path, ckpt: Dict[str, Any]) -> None:
    """checkpoint.save_checkpoint at `path` (<run dir>/checkpoints/<name>.pt), refusing a non-finite
    state; a failed write is one line ending with the command that resumes the run."""
    path = Path(path)
    bad = checkpoint.nonfinite(ckpt)
    if bad:
        kept = f"{path}, the last good checkpoint, is kept" if path.is_file() else f"nothing written at {path}"
        raise TrainingError(f"the state at step {ckpt.get('step')} is not finite ({', '.join(bad[:3])}): the run "
                            f"diverged after its last logged loss; {kept}; lower optim.lr or check the "
                            "objective's settings")
    try:
        checkpoint.save_checkpoint(path, ckpt)
    except CheckpointError as err:
        raise CheckpointError(f"{err} with: {resume_command(path.parent.parent)}") from None
