"""vaetheory: closed-form global optima and posterior-collapse predictions for linear VAEs."""

__version__ = "0.1.0"
