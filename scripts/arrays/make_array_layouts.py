"""Antenna layouts for `lofi simulate uv-coverage --array NAME`, converted once from the layout
files of pyvisgen 0.9.0 (https://pypi.org/project/pyvisgen/, radionets-project, MIT license;
the wheel's share/resources/layouts/*.txt) to local east-north-up metres.

    pip download --no-deps pyvisgen==0.9.0 && unzip pyvisgen-0.9.0-py3-none-any.whl
    python scripts/arrays/make_array_layouts.py pyvisgen-0.9.0.data/data/share/resources/layouts

* meerkat.txt: absolute ITRF (geocentric) X, Y, Z of 63 MeerKAT dishes (m017 is absent from the
  file). Converted relative to their centroid, whose WGS84 geodetic latitude and longitude
  (computed here) define the local east-north-up frame.
* vla.txt: offsets of 27 VLA pads (the B configuration: N4..N36, E4..E36, W4..W36) in the
  VLA's customary local-meridian equatorial frame: X towards the meridian on the equator, Y
  east, Z to the celestial pole. E = Y, N = -sin(lat) X + cos(lat) Z, U = cos(lat) X + sin(lat) Z
  at the VLA's latitude, 34.0784 deg. That reading puts the W, N and E arms at azimuths 236, 355
  and 115 degrees with heights within metres of the array centre, as the real array is built.
"""
import os
import sys

import numpy as np

src = sys.argv[1]
out = os.path.join(os.path.dirname(__file__), "..", "..", "data", "arrays")


def load(name):
    rows = [l.split() for l in open(os.path.join(src, name)).read().splitlines()[1:] if l.strip()]
    return [r[0] for r in rows], np.array([[float(v) for v in r[1:4]] for r in rows])


def write(name, stations, enu, lat, lon, note):
    with open(os.path.join(out, name), "w") as f:
        f.write(f"# {note}\n# Source: pyvisgen 0.9.0 (PyPI), share/resources/layouts, MIT license,\n")
        f.write("# Copyright (c) 2021 radionets-project; see data/arrays/LICENSE-pyvisgen.\n")
        f.write(f"# Converted by scripts/arrays/make_array_layouts.py. Array latitude {lat:.6f} deg, longitude {lon:.6f} deg.\n")
        f.write("# east north up (metres), station\n")
        for s, (e, n, u) in zip(stations, enu):
            f.write(f"{e:.3f} {n:.3f} {u:.3f} # {s}\n")


names, xyz = load("meerkat.txt")
c = xyz.mean(0)
a, fl = 6378137.0, 1 / 298.257223563
e2 = fl * (2 - fl)
lon = np.arctan2(c[1], c[0])
p = np.hypot(c[0], c[1])
lat = np.arctan2(c[2], p * (1 - e2))
for _ in range(10):
    nr = a / np.sqrt(1 - e2 * np.sin(lat) ** 2)
    h = p / np.cos(lat) - nr
    lat = np.arctan2(c[2], p * (1 - e2 * nr / (nr + h)))
d = xyz - c
E = -np.sin(lon) * d[:, 0] + np.cos(lon) * d[:, 1]
N = -np.sin(lat) * np.cos(lon) * d[:, 0] - np.sin(lat) * np.sin(lon) * d[:, 1] + np.cos(lat) * d[:, 2]
U = np.cos(lat) * np.cos(lon) * d[:, 0] + np.cos(lat) * np.sin(lon) * d[:, 1] + np.sin(lat) * d[:, 2]
write("meerkat.enu.txt", names, np.stack([E, N, U], 1), np.degrees(lat), np.degrees(lon),
      "MeerKAT, 63 dishes of 13.5 m (m017 absent from the source file)")

names, xyz = load("vla.txt")
lat = np.radians(34.0784)
X, Y, Z = xyz.T
enu = np.stack([Y, -np.sin(lat) * X + np.cos(lat) * Z, np.cos(lat) * X + np.sin(lat) * Z], 1)
for arm, az in (("W", 236), ("N", 355), ("E", 115)):
    sel = [i for i, s in enumerate(names) if s.startswith(arm)]
    got = np.degrees(np.arctan2(enu[sel, 0], enu[sel, 1])) % 360
    assert np.all(np.abs(got - az) < 4), (arm, got)
assert np.abs(enu[:, 2]).max() < 30
write("vla.enu.txt", names, enu, 34.0784, -107.6184, "VLA, B configuration, 27 antennas of 25 m")
print("wrote", out)
