"""What a simulated source is: its population kind, bogus subtype or variable-star light-curve shape."""

from __future__ import annotations

VAR, AGN, SN, FAST, ULENS, SSO, MOVER, BOGUS = range(8)
KIND_NAMES = ("variable_star", "agn", "supernova", "fast_transient", "microlensing", "solar_system",
              "unknown_mover", "bogus")
HISTORY_KINDS = (VAR, AGN, SN, FAST, ULENS)          # real objects with a past: they carry a diaObject and history

# Bogus subtypes (kind BOGUS)
BOGUS_DIPOLE, BOGUS_COSMIC_RAY, BOGUS_EDGE, BOGUS_STREAK, BOGUS_RESIDUAL, BOGUS_NOISE = range(6)

# Variable-star light-curve shapes (kind VAR)
SINE, SAWTOOTH, ECLIPSE = range(3)
