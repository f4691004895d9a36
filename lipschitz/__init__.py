"""Gram-iteration spectral-norm bounds and spectral-rescaling 1-Lipschitz networks."""
