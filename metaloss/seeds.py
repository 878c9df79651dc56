"""Fixed seeds of the evaluation sets, in one place.

Tasks are identified by ``(split, index)`` and need no seed (:func:`metaloss.tasks.task_generator`);
these seeds draw the *learner initialisations* of fixed evaluation sets, so that every run and
every loss sees the same learners: meta-validation during meta-training and tuning, selection on
meta-train tasks, and meta-testing.
"""

__all__ = ["GRID_INIT_SEED", "INIT_SEED_STRIDE", "TEST_INIT_SEED", "VALID_INIT_SEED"]

VALID_INIT_SEED = 1_000_003
"""Learner initialisations of the meta-validation tasks (meta-training and tuning)."""

TEST_INIT_SEED = 2_000_033
"""Learner initialisations of meta-test (and benchmark-tested) tasks."""

GRID_INIT_SEED = 3_000_017
"""Learner initialisations of the meta-train tasks used for selection (learning rates, loss
parameters)."""

INIT_SEED_STRIDE = 7919
"""Offset per run seed (``seed``) of the benchmark's initialisation seeds."""
