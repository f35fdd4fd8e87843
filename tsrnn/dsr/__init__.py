"""Dynamical-systems reconstruction: PLRNN-family estimators trained by teacher forcing.

- :class:`PLRNN`, :class:`ShallowPLRNN`, :class:`ALRNN`: scikit-learn style estimators with
  ``fit(y)``, ``predict(n_steps, context=None)``, ``save``/``load``, checkpoint selection by
  the state-space divergence of free runs, and the analyses of a fitted model
  (``as_discrete_map`` for :mod:`tsrnn.analysis`, ``fixed_points``, ``symbolic_codes``,
  ``region_transition_graph``).
- :mod:`tsrnn.dsr.teacher_forcing`: generalized teacher forcing with a fixed or adaptive
  alpha (Hess et al. 2023), sparse teacher forcing (Mikhaeil et al. 2022), BPTT, and the
  observation models that turn data into forcing signals.

Example
-------
>>> from tsrnn.systems import Lorenz63
>>> from tsrnn.dsr import ALRNN
>>> y = Lorenz63().simulate(3000, transient=500, seed=0)
>>> model = ALRNN(n_latent=8, n_pwl=2, teacher_forcing="gtf", sequence_length=50,
...               max_epochs=2, batches_per_epoch=5, dt=0.01, random_state=0).fit(y)
>>> model.predict(100).shape
(100, 3)
"""

from .estimators import (
    ALRNN,
    PLRNN,
    DSREstimator,
    RegionGraph,
    ShallowPLRNN,
    observation_noise_level,
)
from .teacher_forcing import (
    AdaptiveAlpha,
    AffineObservation,
    GeneralizedTeacherForcing,
    IdentityObservation,
    NoForcing,
    ReconstructionModel,
    SparseTeacherForcing,
    forced_rollout,
    max_geometric_mean_norm,
    optimal_alpha,
    teacher_forced_run,
)

__all__ = [
    "ALRNN",
    "PLRNN",
    "AdaptiveAlpha",
    "AffineObservation",
    "DSREstimator",
    "GeneralizedTeacherForcing",
    "IdentityObservation",
    "NoForcing",
    "ReconstructionModel",
    "RegionGraph",
    "ShallowPLRNN",
    "SparseTeacherForcing",
    "forced_rollout",
    "max_geometric_mean_norm",
    "observation_noise_level",
    "optimal_alpha",
    "teacher_forced_run",
]
