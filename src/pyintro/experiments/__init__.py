"""The experiments: the follow-up post's Yes/No sweep (``sweep``, `pyintro run`) and the four of
Lindsey (2025) (``detection`` and ``trials``: experiment 1; ``thoughts``: 2; ``prefill``: 3;
``control``: 4). Each is an ``Experiment`` value (``protocol``) built from the stimuli (pyintro.stimuli,
``pairs``, ``dialogue``), a manipulation (injections over a grid) and the shared readouts
(pyintro.readout); ``EXPERIMENTS`` maps each command's name to it.
"""

from pyintro.experiments import (control, detection, prefill, prefill_trials, sweep, thoughts, thoughts_trials,
                                 trials)
from pyintro.experiments.protocol import Experiment, execute, finish, merge, read_folder, reanalyse, run

EXPERIMENTS = {e.name: e for e in (sweep.EXPERIMENT, detection.EXPERIMENT, trials.EXPERIMENT, thoughts.EXPERIMENT,
                                   thoughts_trials.TRIALS, prefill.EXPERIMENT, prefill_trials.TRIALS,
                                   control.EXPERIMENT)}

__all__ = ["EXPERIMENTS", "Experiment", "execute", "finish", "merge", "read_folder", "reanalyse", "run"]
