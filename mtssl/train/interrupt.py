"""The line a training run ends with when Ctrl-C or SIGTERM stops it (``mtssl.contract.interrupts``)."""

from __future__ import annotations

from pathlib import Path

from mtssl.contract.interrupts import EXIT_CODES


class Interrupted(Exception):
    """The run was stopped by a signal; ``str()`` is the line to print and ``exit_code`` the status."""

    def __init__(self, signal_name: str, step: int, steps: int, out: Path, kept: Path | None, kept_step: int) -> None:
        self.exit_code = EXIT_CODES.get(signal_name, 130)
        if kept is None:
            saved = "no checkpoint written yet; rerun the same command to start again"
        else:
            saved = f"kept {kept} (step {kept_step}); resume with: mtssl-train --out {out} --resume"
        super().__init__(f"interrupted ({signal_name}) at step {step} of {steps}; {saved}")
