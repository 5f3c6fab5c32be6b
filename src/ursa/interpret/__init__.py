"""The interpret stage: what a model gets wrong, where it looked, and a model card.

* :class:`Interpretation` — from ``learner.interpret()`` or
  :meth:`Interpretation.from_bundle`: confusion matrix, most confused pairs,
  top losses with Grad-CAM heat maps, per-class precision / recall / F1,
  calibration, and the self-contained ``report.html``;
* :mod:`ursa.interpret.metrics` — the numbers, in numpy;
* :mod:`ursa.interpret.gradcam` — Grad-CAM of a backbone's last convolutional stage;
* :mod:`ursa.interpret.plots` — the figures (matplotlib, Agg canvas, no pyplot);
* :mod:`ursa.interpret.report` — the HTML model card and the files ``ursa interpret`` writes.

Importing this package imports torch; ``import ursa`` does not import it.
"""

from ursa.interpret.interpretation import Interpretation, ModelSummary, TopLoss
from ursa.interpret.metrics import Calibration, ClassMetrics, Confusion

__all__ = [
    "Calibration",
    "ClassMetrics",
    "Confusion",
    "Interpretation",
    "ModelSummary",
    "TopLoss",
]
