"""Realistic simulated Rubin alerts (schema lsst.v11_1.alert), one visit at a time.

Import the public API from ``afs.alerts.simulate`` (``simulate_visit``, ``simulate_visits``); this package
holds the model, one concern per module.

Why: the service needs alert streams with Rubin's sizes, histories and populations to test and benchmark
filters, the stream worker and the PPDB mirror; lsst.alert.packet's own simulator fills almost nothing on v11.

The model, in short (every draw comes from ``np.random.default_rng``, so a seed gives byte-identical alerts):

- Survey: a visit points LSSTCam (189 4k detectors, 0.2"/px, ~3.5 deg across) at a field above Cerro Pachon
  at the visit time, in one band, with seeing and a 5-sigma depth drawn per visit. Sources sit on real
  detector pixels; ra/dec, x/y and detector agree through a TAN projection, and each cutout carries the
  local linear WCS at its source.
- Time: visit numbers are day_obs * 100000 + seq as for LSSTCam; a night starts at 23:30 UTC on day_obs and
  each visit takes 37 s (numbers that are no date count nights from DEFAULT_FIRST_VISIT's).
- History: each field has a 12-month past schedule (pairs of visits ~33 min apart on nights days to weeks
  apart, denser in rolling-cadence weeks, season gaps, dithers). Detections (>= 5 sigma) become
  prvDiaSources; every covered visit since the object was created becomes a prvDiaForcedSource; the
  diaObject summarises exactly those sources. Most alerts carry ~10 + 15 of them, variables up to ~100.
- Populations, mixed by where the field is: periodic variable stars and microlensing (Paczynski, achromatic)
  towards the Galactic plane and bulge; AGN (damped random walk), supernovae (Bazin rise and fall, offset from a
  host) and fast risers away from it; asteroids towards the ecliptic (known ones with ssSource and mpc_orbits
  from a self-consistent orbit, unknown ones as new diaObjects); bogus detections (dipoles, cosmic rays,
  detector edges, satellite streaks, bright-star residuals, noise) with low reliability and their pixel flags.
- ``simulate_visits`` observes fields in blobs of ``BLOB`` visits and then revisits each field once in
  another band (a scheduler pair), so real objects and known asteroids come back with the first visit's
  diaSource in their history.

Ids: diaSourceId = visit << 22 | slot (slot unique within a field), so ids are unique across visits;
diaObjectId is the id of the object's first diaSource; diaForcedSourceId sets bit 21 of the slot;
ssObjectId is the asteroid's packed MPC designation read as 8 ASCII bytes.

Modules, from the entry points down:

- visits: simulate_visit and simulate_visits (argument checks, seeding, scheduler blobs and pairs)
- observe: one visit of a field, from its objects to its alerts
- detection: new objects of each kind, drawn until detected; revisit: what a revisit inherits from the
  first visit; history: prvDiaSources and prvDiaForcedSources of new objects
- assembly: alert dicts from the visit's tables; dia_sources, dia_objects, asteroid_rows: their columns;
  cutout_scenes: what each cutout shows (afs.alerts.cutouts renders and writes it); records: schema
  columns and record dicts; tables: column-table helpers
- populations: each kind's sampler and a field's mix of kinds; asteroids: orbits and ephemerides;
  light_curves: true fluxes over time; measurement: noisy photometry and detector coverage
- schedule: fields, pointings, past visits and revisits; epochs: a field's visits and their image
  properties; clock: visit numbers and times; ids: source ids
- photometry: bands, fluxes and survey depths; camera: LSSTCam focal plane and detectors; sky: celestial
  frames and projections; kinds: population kinds and subtypes
"""
