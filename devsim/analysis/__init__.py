"""Which nodes changed? Joint Gaussian graphical models of two conditions.

- :mod:`~devsim.analysis.pnjgl`: the perturbed-node joint graphical lasso (Mohan et
  al. 2012, 2014) and the fused and group joint graphical lasso baselines (Danaher et
  al. 2014), solved by ADMM, with an optimality check;
- :mod:`~devsim.analysis.selection`: a lambda2 path with an information criterion,
  stability selection, detection precision and recall;
- :mod:`~devsim.analysis.synthetic`: the authors' synthetic set-up;
- :mod:`~devsim.analysis.activity`, :mod:`~devsim.analysis.records`,
  :mod:`~devsim.analysis.compare`: record node activity of a trained chip under a
  condition (faulty devices) and report which neurons changed (``devsim activity``,
  ``devsim analyse``).

Nothing here imports ``devices`` at module level.
"""
from devsim.analysis.pnjgl import (METHODS, AdmmSettings, JointResult, empirical_covariance,
                                   fused_jgl, group_jgl, optimality, pnjgl)
from devsim.analysis.selection import (LambdaPath, fit_path, information_criterion,
                                       lambda2_grid, stability_selection)

__all__ = ["pnjgl", "fused_jgl", "group_jgl", "METHODS", "AdmmSettings", "JointResult",
           "empirical_covariance", "optimality", "fit_path", "LambdaPath", "lambda2_grid",
           "information_criterion", "stability_selection"]
