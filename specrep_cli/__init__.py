"""specrep: self-supervised representation learning through spectral decomposition."""
__version__ = "0.1.0"
