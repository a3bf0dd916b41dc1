//! Earth-rotation synthesis: the (u, v) coverage of an interferometer tracking a source, and its
//! gridded mask on an image's Fourier plane.
//!
//! Antennas are given in local east-north-up (ENU) metres. A baseline `(E, N, U)` is rotated to
//! equatorial coordinates at the array latitude `phi` (Thompson, Moran & Swenson, "Interferometry
//! and Synthesis in Radio Astronomy", ch. 4):
//! `X = -sin(phi) N + cos(phi) U`, `Y = E`, `Z = cos(phi) N + sin(phi) U`, and projected for a
//! source at hour angle `h` and declination `delta`:
//! `u = sin(h) X + cos(h) Y`, `v = -sin(delta) cos(h) X + sin(delta) sin(h) Y + cos(delta) Z`,
//! then divided by the wavelength. Each baseline appears once per time (i < j); its conjugate
//! `(-u, -v)` is implied (real sky) and added when gridding. Times when the source is below
//! `min_elevation_deg` are skipped.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Where and how long the array observes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// Array latitude, degrees (the VLA's is 34.08).
    pub latitude_deg: f64,
    /// Source declination, degrees.
    pub declination_deg: f64,
    /// Hour-angle range of the track, hours (inclusive).
    pub hour_angle_start_h: f64,
    pub hour_angle_end_h: f64,
    /// Samples (integrations) along the track, evenly spaced.
    pub times: usize,
    /// Observing wavelength, metres (0.21: the neutral-hydrogen line).
    pub wavelength_m: f64,
    /// Lowest source elevation observed, degrees.
    pub min_elevation_deg: f64,
}

impl Default for Observation {
    fn default() -> Self {
        Observation {
            latitude_deg: 34.0784,
            declination_deg: 45.0,
            hour_angle_start_h: -4.0,
            hour_angle_end_h: 4.0,
            times: 64,
            wavelength_m: 0.21,
            min_elevation_deg: 10.0,
        }
    }
}

/// A VLA-like "Y" array: three arms of 9 antennas at azimuths 355, 115 and 235 degrees (east of
/// north), at distances `arm_length_m (k / 9)^1.716`, k = 1..9, the VLA's power-law spacing
/// (it gives a roughly uniform logarithmic baseline distribution). 27 antennas, flat (U = 0).
pub fn vla_like_y(arm_length_m: f64) -> Vec<[f64; 3]> {
    let mut antennas = Vec::with_capacity(27);
    for azimuth_deg in [355.0f64, 115.0, 235.0] {
        let (s, c) = azimuth_deg.to_radians().sin_cos();
        for k in 1..=9 {
            let r = arm_length_m * (k as f64 / 9.0).powf(1.716);
            antennas.push([r * s, r * c, 0.0]);
        }
    }
    antennas
}

/// Reads antenna positions: one antenna per line, "E N [U]" in metres separated by spaces, tabs
/// or commas; blank lines and `#` comments are ignored.
pub fn read_antennas(path: &Path) -> Result<Vec<[f64; 3]>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_antennas(&text, &path.display().to_string())
}

/// [`read_antennas`] on text; `source` names it in errors.
pub fn parse_antennas(text: &str, source: &str) -> Result<Vec<[f64; 3]>> {
    let mut antennas = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<f64> = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|f| !f.is_empty())
            .map(|f| f.parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("{source}:{}: expected numbers 'E N [U]'", number + 1))?;
        match fields.as_slice() {
            [e, n] => antennas.push([*e, *n, 0.0]),
            [e, n, u] => antennas.push([*e, *n, *u]),
            _ => bail!("{source}:{}: expected 2 or 3 numbers (E N [U] in metres)", number + 1),
        }
        if antennas.last().is_some_and(|a| a.iter().any(|v| !v.is_finite())) {
            bail!("{source}:{}: positions must be finite", number + 1);
        }
    }
    if antennas.len() < 2 {
        bail!("{source}: an interferometer needs at least 2 antennas, found {}", antennas.len());
    }
    Ok(antennas)
}

/// Real arrays, from the layouts of pyvisgen 0.9.0 (MIT; `data/arrays/`, converted to
/// east-north-up metres by `scripts/arrays/make_array_layouts.py`, which cites the source).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Array {
    /// MeerKAT (South Africa): 63 of its 64 13.5 m dishes, baselines up to 7.7 km.
    Meerkat,
    /// The VLA (New Mexico) in its B configuration: 27 antennas, baselines up to 11 km.
    Vla,
}

impl Array {
    pub fn name(self) -> &'static str {
        match self {
            Array::Meerkat => "meerkat",
            Array::Vla => "vla",
        }
    }

    /// Geodetic latitude of the array centre, degrees.
    pub fn latitude_deg(self) -> f64 {
        match self {
            Array::Meerkat => -30.712461,
            Array::Vla => 34.0784,
        }
    }

    /// Antenna positions, east-north-up metres.
    pub fn antennas(self) -> Vec<[f64; 3]> {
        let text = match self {
            Array::Meerkat => include_str!("../../../../data/arrays/meerkat.enu.txt"),
            Array::Vla => include_str!("../../../../data/arrays/vla.enu.txt"),
        };
        parse_antennas(text, self.name()).expect("the built-in layouts parse")
    }
}

/// Wavelengths (metres) of `channels` frequency channels evenly spread over `bandwidth_hz`
/// centred on the frequency of `wavelength_m` (channel centres; one channel: the centre).
pub fn channel_wavelengths(wavelength_m: f64, channels: usize, bandwidth_hz: f64) -> Vec<f64> {
    const C: f64 = 299_792_458.0;
    let centre = C / wavelength_m;
    (0..channels)
        .map(|k| {
            let offset = if channels > 1 { (k as f64 + 0.5) / channels as f64 - 0.5 } else { 0.0 };
            C / (centre + offset * bandwidth_hz)
        })
        .collect()
}

/// [`earth_rotation_uv`] for each wavelength in turn (channel-major: all of channel 0's
/// points, then channel 1's, ...).
pub fn multi_channel_uv(antennas: &[[f64; 3]], obs: &Observation, wavelengths_m: &[f64]) -> Vec<[f64; 2]> {
    wavelengths_m
        .iter()
        .flat_map(|&wavelength_m| earth_rotation_uv(antennas, &Observation { wavelength_m, ..*obs }))
        .collect()
}

/// The (u, v) points, in wavelengths, of every baseline at every time of the track.
pub fn earth_rotation_uv(antennas: &[[f64; 3]], obs: &Observation) -> Vec<[f64; 2]> {
    let (sin_phi, cos_phi) = obs.latitude_deg.to_radians().sin_cos();
    let (sin_dec, cos_dec) = obs.declination_deg.to_radians().sin_cos();
    let sin_min_elevation = obs.min_elevation_deg.to_radians().sin();
    // Equatorial baseline vectors, in wavelengths.
    let mut baselines = Vec::new();
    for (i, a) in antennas.iter().enumerate() {
        for b in &antennas[i + 1..] {
            let (e, n, u) = (b[0] - a[0], b[1] - a[1], b[2] - a[2]);
            let x = -sin_phi * n + cos_phi * u;
            let z = cos_phi * n + sin_phi * u;
            baselines.push([x / obs.wavelength_m, e / obs.wavelength_m, z / obs.wavelength_m]);
        }
    }
    let mut points = Vec::with_capacity(baselines.len() * obs.times);
    for t in 0..obs.times {
        let fraction = if obs.times > 1 { t as f64 / (obs.times - 1) as f64 } else { 0.5 };
        let hour_angle_h =
            obs.hour_angle_start_h + fraction * (obs.hour_angle_end_h - obs.hour_angle_start_h);
        let (sin_h, cos_h) = (hour_angle_h * 15.0).to_radians().sin_cos();
        if sin_phi * sin_dec + cos_phi * cos_dec * cos_h < sin_min_elevation {
            continue;
        }
        for &[x, y, z] in &baselines {
            let u = sin_h * x + cos_h * y;
            let v = -sin_dec * cos_h * x + sin_dec * sin_h * y + cos_dec * z;
            points.push([u, v]);
        }
    }
    points
}

/// The largest pixel size (arcseconds) for which every point and its conjugate grid inside an
/// H x W Fourier plane: `|u| W delta <= W/2 - 1` and `|v| H delta <= H/2 - 1` cycles (Nyquist
/// sampling of the longest projected baseline, less the rounding margin of the last cell).
pub fn nyquist_pixel_arcsec(points: &[[f64; 2]], height: i64, width: i64) -> f64 {
    let max_u = points.iter().fold(0f64, |m, p| m.max(p[0].abs()));
    let max_v = points.iter().fold(0f64, |m, p| m.max(p[1].abs()));
    let limit =
        |n: i64, max: f64| if max > 0.0 { (n as f64 / 2.0 - 1.0) / (n as f64 * max) } else { f64::INFINITY };
    let pixel_rad = limit(width, max_u).min(limit(height, max_v));
    pixel_rad.to_degrees() * 3600.0
}

/// The gridded coverage (centred layout, with conjugates) as a row-major (H, W) 0/1 mask, and the
/// number of points that fell outside the plane.
pub fn coverage_mask(points: &[[f64; 2]], height: i64, width: i64, pixel_arcsec: f64) -> (Vec<f32>, usize) {
    use lofi::operators::fourier::{grid_uv, wavelengths_to_cycles};
    let cycles = wavelengths_to_cycles(points, height, width, pixel_arcsec);
    let (mask, outside) = grid_uv(&cycles, height, width, true);
    let values = Vec::<f32>::try_from(mask.to_kind(tch::Kind::Float).reshape([-1])).expect("float mask");
    (values, outside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn east_west_baseline_traces_the_textbook_ellipse() {
        // u = L cos h, v = L sin(delta) sin h for an east-west baseline of L wavelengths.
        let obs =
            Observation { declination_deg: 30.0, times: 25, min_elevation_deg: -90.0, ..Default::default() };
        let length = 1000.0;
        let points = earth_rotation_uv(&[[0.0, 0.0, 0.0], [length * obs.wavelength_m, 0.0, 0.0]], &obs);
        assert_eq!(points.len(), 25);
        for [u, v] in points {
            let r = (u / length).powi(2) + (v / (length * 0.5)).powi(2);
            assert!((r - 1.0).abs() < 1e-12, "{u} {v}");
        }
    }

    #[test]
    fn north_south_baseline_at_the_pole_is_a_circle() {
        // At the north pole (phi = 90), a north-south baseline lies in the equatorial plane
        // (X = -N): a source at the celestial pole sees it rotate at constant length.
        let obs = Observation { latitude_deg: 90.0, declination_deg: 90.0, times: 10, ..Default::default() };
        let points = earth_rotation_uv(&[[0.0, 0.0, 0.0], [0.0, 2.1, 0.0]], &obs);
        for [u, v] in points {
            assert!(((u * u + v * v).sqrt() - 10.0).abs() < 1e-9);
        }
    }

    #[test]
    fn vla_like_array_and_its_mask() {
        let antennas = vla_like_y(1000.0);
        assert_eq!(antennas.len(), 27);
        let obs = Observation::default();
        let points = earth_rotation_uv(&antennas, &obs);
        assert_eq!(points.len(), 27 * 26 / 2 * obs.times);
        let pixel = nyquist_pixel_arcsec(&points, 64, 64);
        let (mask, outside) = coverage_mask(&points, 64, 64, pixel);
        assert_eq!(outside, 0);
        let covered = mask.iter().sum::<f32>() / mask.len() as f32;
        assert!(covered > 0.05 && covered < 0.9, "coverage {covered}");
        // Hermitian symmetric about the centre (32, 32) for even sizes.
        for r in 1..64 {
            for c in 1..64 {
                assert_eq!(mask[r * 64 + c], mask[(64 - r) * 64 + (64 - c)]);
            }
        }
    }

    #[test]
    fn real_arrays_baselines_symmetry_and_tracks() {
        for (array, count, longest_km) in [(Array::Meerkat, 63, (7.0, 8.5)), (Array::Vla, 27, (9.0, 12.0))] {
            let antennas = array.antennas();
            assert_eq!(antennas.len(), count, "{array:?}");
            let obs = Observation {
                latitude_deg: array.latitude_deg(),
                declination_deg: -30.0,
                times: 16,
                min_elevation_deg: -90.0,
                ..Default::default()
            };
            let points = earth_rotation_uv(&antennas, &obs);
            assert_eq!(
                points.len(),
                count * (count - 1) / 2 * 16,
                "{array:?}: one point per baseline and time"
            );
            // Longest baseline (at transit it is at most the 3-D antenna separation).
            let mut longest = 0f64;
            for (i, a) in antennas.iter().enumerate() {
                for b in &antennas[i + 1..] {
                    longest = longest.max((0..3).map(|k| (a[k] - b[k]).powi(2)).sum::<f64>().sqrt());
                }
            }
            assert!(longest / 1e3 > longest_km.0 && longest / 1e3 < longest_km.1, "{array:?}: {longest} m");
            let max_uv = points.iter().map(|p| p[0].hypot(p[1])).fold(0f64, f64::max);
            assert!(max_uv <= longest / obs.wavelength_m * (1.0 + 1e-9));
            // Reversing the antenna order gives every baseline's conjugate (-u, -v).
            let reversed: Vec<[f64; 3]> = antennas.iter().rev().copied().collect();
            let mut a: Vec<(i64, i64)> =
                points.iter().map(|p| ((p[0] * 1e3).round() as i64, (p[1] * 1e3).round() as i64)).collect();
            let mut b: Vec<(i64, i64)> = earth_rotation_uv(&reversed, &obs)
                .iter()
                .map(|p| ((-p[0] * 1e3).round() as i64, (-p[1] * 1e3).round() as i64))
                .collect();
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "{array:?}: conjugate symmetry");
        }
        // MeerKAT is flat to 20 m over 8 km, in the southern hemisphere.
        assert!(Array::Meerkat.antennas().iter().all(|a| a[2].abs() < 25.0));
        assert!(Array::Meerkat.latitude_deg() < -30.0);
    }

    #[test]
    fn east_west_track_axis_ratio_is_sin_dec_at_every_channel() {
        for dec in [-60.0f64, 20.0, 75.0] {
            let obs = Observation {
                declination_deg: dec,
                times: 49,
                hour_angle_start_h: -6.0,
                hour_angle_end_h: 6.0,
                min_elevation_deg: -90.0,
                ..Default::default()
            };
            let wavelengths = channel_wavelengths(0.21, 3, 100e6);
            assert!(wavelengths[0] > wavelengths[1] && wavelengths[1] > wavelengths[2]);
            assert!((wavelengths[1] - 0.21).abs() < 1e-12);
            let points = multi_channel_uv(&[[0.0, 0.0, 0.0], [500.0, 0.0, 0.0]], &obs, &wavelengths);
            assert_eq!(points.len(), 147); // 49 times: hour angles 0 and +-6 h are sampled
            for (channel, chunk) in points.chunks(49).enumerate() {
                let max_u = chunk.iter().map(|p| p[0].abs()).fold(0f64, f64::max);
                let max_v = chunk.iter().map(|p| p[1].abs()).fold(0f64, f64::max);
                assert!((max_u - 500.0 / wavelengths[channel]).abs() < 1e-9 * max_u);
                let ratio = max_v / max_u;
                assert!((ratio - dec.to_radians().sin().abs()).abs() < 1e-9, "dec {dec}: ratio {ratio}");
            }
        }
    }

    #[test]
    fn reads_antenna_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("array.txt");
        std::fs::write(&path, "# E N U\n0 0 0\n100.5, -20\n\n  30\t40 2 # note\n").unwrap();
        let antennas = read_antennas(&path).unwrap();
        assert_eq!(antennas, vec![[0.0, 0.0, 0.0], [100.5, -20.0, 0.0], [30.0, 40.0, 2.0]]);
        std::fs::write(&path, "0 0\n1 x\n").unwrap();
        assert!(read_antennas(&path).is_err());
    }
}
