"""The files a training run writes below its output directory (``RunConfig.output_dir``).

Apart from the trainer so that whoever reads a run's folder (the app looks for its newest
checkpoint) knows the names without importing TensorFlow."""

import os
from dataclasses import dataclass, field

BEST = "best.keras"  # the best validation reconstruction loss so far
FINAL = "final.keras"  # the model when the run ended
CONFIG = "config.json"  # the RunConfig
SPLIT = "split.json"  # the file names of the run's train and val split
CSV = "log.csv"  # every epoch's metrics
LOGS = "logs"  # TensorBoard
SAMPLES = "samples"  # the sample grids, PNG
BACKUP = "backup"  # the resume state

CHECKPOINTS = (BEST, FINAL)


@dataclass
class RunPaths:
    """Where a run writes its outputs: each field is its file or folder below ``root``."""

    root: str
    best: str = field(init=False)
    final: str = field(init=False)
    config: str = field(init=False)
    split: str = field(init=False)
    csv: str = field(init=False)
    logs: str = field(init=False)
    samples: str = field(init=False)
    backup: str = field(init=False)

    def __post_init__(self):
        join = os.path.join
        self.best, self.final = join(self.root, BEST), join(self.root, FINAL)
        self.config, self.csv = join(self.root, CONFIG), join(self.root, CSV)
        self.split = join(self.root, SPLIT)
        self.logs, self.samples = join(self.root, LOGS), join(self.root, SAMPLES)
        self.backup = join(self.root, BACKUP)
