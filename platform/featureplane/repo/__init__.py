"""Loading a feature repository and validating it."""
