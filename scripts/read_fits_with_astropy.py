"""Reads a FITS image with astropy and prints what it finds as JSON, for
tests/formats_fits_astropy.rs (which checks lofi's FITS outputs with an independent reader).

  python scripts/read_fits_with_astropy.py FILE [X,Y ...]

Prints {"shape", "dtype", "data" (flattened, file order), "header" (keyword -> value, structural
and HISTORY cards included), "history" (list), "world" (for each 0-based pixel X,Y: the world
coordinates astropy.wcs gives, all axes, extra axes at pixel 0)}. The file must pass
astropy's verify('exception'): a non-standard header fails here.
"""
import json
import sys

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS


def main():
    path, pixels = sys.argv[1], sys.argv[2:]
    with fits.open(path) as hdul:
        hdul.verify("exception")
        hdu = hdul[0]
        data = np.asarray(hdu.data, dtype=np.float64)
        header = hdu.header
        out = {
            "shape": list(data.shape),
            "dtype": str(hdu.data.dtype),
            "data": data.reshape(-1).tolist(),
            "header": {k: v for k, v in header.items() if k not in ("HISTORY", "COMMENT", "")},
            "history": [str(h) for h in header.get("HISTORY", [])],
            "world": [],
        }
        if pixels:
            wcs = WCS(header)
            for p in pixels:
                x, y = (float(v) for v in p.split(","))
                coords = [x, y] + [0.0] * (wcs.naxis - 2)
                out["world"].append([float(v) for v in wcs.wcs_pix2world([coords], 0)[0]])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
