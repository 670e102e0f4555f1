"""diaObject columns: each object's per-band summary of its detections and forced photometry."""

from __future__ import annotations

from typing import Callable

import numpy as np

from afs.alerts.simulation.photometry import BANDS


def dia_object_table(n: int, object_id: np.ndarray, sources: dict, forced: dict, current: dict) -> dict:
    """diaObject columns summarising each object's detections (history + this one) and forced photometry."""
    oi, band = sources["_oi"], sources["_band"]
    key, size = oi * 6 + band, n * 6
    flux, err = sources["psfFlux"], sources["psfFluxErr"]
    w = 1 / err**2
    count = np.bincount(key, minlength=size).astype(float)
    sum_w = np.bincount(key, w, minlength=size)
    mean = np.bincount(key, w * flux, minlength=size) / np.where(sum_w > 0, sum_w, np.nan)
    sq = np.bincount(key, flux**2, minlength=size)
    plain = np.bincount(key, flux, minlength=size)
    sigma = np.sqrt(np.maximum(sq / np.maximum(count, 1) - (plain / np.maximum(count, 1)) ** 2, 0)
                    * count / np.maximum(count - 1, 1))
    sigma[count < 2] = np.nan
    sci_w = 1 / sources["scienceFluxErr"] ** 2
    sci_sw = np.bincount(key, sci_w, minlength=size)
    sci_mean = np.bincount(key, sci_w * sources["scienceFlux"], minlength=size) / np.where(sci_sw > 0, sci_sw, np.nan)
    fkey = forced["_oi"] * 6 + forced["_band"]
    fw = 1 / forced["psfFluxErr"] ** 2
    f_sw = np.bincount(fkey, fw, minlength=size)
    fp_mean = np.bincount(fkey, fw * forced["psfFlux"], minlength=size) / np.where(f_sw > 0, f_sw, np.nan)
    order = np.lexsort((sources["midpointMjdTai"], key))
    ks, ts, fs = key[order], sources["midpointMjdTai"][order], flux[order]
    same = ks[1:] == ks[:-1]
    slopes = np.abs(np.diff(fs)) / np.maximum(np.diff(ts), 1e-4)
    max_slope = _grouped(ks[1:][same], slopes[same], size, np.maximum.reduceat)
    fmin = _grouped(key, flux, size, np.minimum.reduceat)
    fmax = _grouped(key, flux, size, np.maximum.reduceat)
    err_mean = np.bincount(key, err, minlength=size) / np.where(count > 0, count, np.nan)

    wpos = 1 / sources["raErr"] ** 2
    sw = np.bincount(oi, wpos, minlength=n)
    # Weighted mean position; ra averaged as an offset from the current position to survive 0/360.
    dra = (sources["ra"] - current["ra"][oi] + 180) % 360 - 180
    ra = (current["ra"] + np.bincount(oi, wpos * dra, minlength=n) / sw) % 360
    dec = np.bincount(oi, wpos * sources["dec"], minlength=n) / sw
    pos_err = 1 / np.sqrt(sw)
    tmin = _grouped(oi, sources["midpointMjdTai"], n, np.minimum.reduceat)
    tmax = _grouped(oi, sources["midpointMjdTai"], n, np.maximum.reduceat)
    table = {"diaObjectId": object_id, "validityStartMjdTai": current["timeProcessedMjdTai"],
             "ra": ra, "raErr": pos_err, "dec": dec, "decErr": pos_err, "ra_dec_Cov": pos_err**2 * 0.01,
             "firstDiaSourceMjdTai": tmin, "lastDiaSourceMjdTai": tmax,
             "nDiaSources": np.bincount(oi, minlength=n)}
    fp_err = 1 / np.sqrt(np.where(f_sw > 0, f_sw, np.nan))
    for b, name in enumerate(BANDS):
        cols = slice(b, size, 6)
        table.update({
            f"{name}_psfFluxMean": mean[cols],
            f"{name}_psfFluxMeanErr": 1 / np.sqrt(np.where(sum_w[cols] > 0, sum_w[cols], np.nan)),
            f"{name}_psfFluxSigma": sigma[cols], f"{name}_psfFluxNdata": count[cols].astype(int),
            f"{name}_fpFluxMean": fp_mean[cols], f"{name}_fpFluxMeanErr": fp_err[cols],
            f"{name}_scienceFluxMean": sci_mean[cols],
            f"{name}_scienceFluxMeanErr": 1 / np.sqrt(np.where(sci_sw[cols] > 0, sci_sw[cols], np.nan)),
            f"{name}_psfFluxMin": fmin[cols], f"{name}_psfFluxMax": fmax[cols],
            f"{name}_psfFluxMaxSlope": max_slope[cols], f"{name}_psfFluxErrMean": err_mean[cols],
        })
    return table


def _grouped(keys: np.ndarray, values: np.ndarray, size: int, reduce: Callable) -> np.ndarray:
    out = np.full(size, np.nan)
    if len(keys):
        order = np.argsort(keys, kind="stable")
        k, v = keys[order], values[order]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        out[k[starts]] = reduce(v, starts)
    return out


def empty_forced_table() -> dict:
    return {"_oi": np.zeros(0, int), "_band": np.zeros(0, int), "psfFlux": np.zeros(0), "psfFluxErr": np.ones(0)}
