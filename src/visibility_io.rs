//! Visibility tables on disk: what `lofi pnp --operator nufft --visibilities` and `lofi clean`
//! read and write.
//!
//! # `.npy` layouts
//! * **Columns**: a float32 or float64 array of shape (M, 5) — `u, v, re, im, weight` — or
//!   (M, 4) without the weight (all 1). C or Fortran order.
//! * **Structured**: a 1-D record array with fields `u`, `v` (float32/float64), the data as `re`
//!   and `im` (or `real` and `imag`) float fields or one complex field `vis` (or `data`,
//!   complex64/complex128), and optionally `weight` (or `weights`). Other fields are ignored.
//!
//! `u`, `v` are in wavelengths (see [`crate::operators::nufft`] for the sign convention), the
//! values in the sky's flux units (Jy for a sky in Jy per pixel), `weight` >= 0 the natural
//! (inverse-variance) weight, 0 for flagged data.
//!
//! # FITS binary tables (`.fits`)
//! The first BINTABLE extension (or the one named `VISIBILITIES`), one row per visibility, column
//! names compared case-insensitively: `U`/`UU` and `V`/`VV` in wavelengths (a `TUNIT` other than
//! lambda/wavelengths, such as UVFITS's seconds, is refused rather than guessed at), the data as
//! one complex column `VIS`/`DATA` (TFORM C or M) or two real columns `RE`/`REAL` and
//! `IM`/`IMAG`, and optionally `WEIGHT`/`WEIGHTS`. UVFITS random-group files are not read.

use std::path::Path;

use npyz::WriterBuilder;

use crate::error::{Error, Result};
use crate::formats::fits;

/// M visibilities: coordinates in wavelengths, complex values, natural weights.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VisibilityTable {
    pub uv: Vec<[f64; 2]>,
    /// (re, im) per visibility.
    pub values: Vec<[f64; 2]>,
    pub weights: Vec<f64>,
}

impl VisibilityTable {
    pub fn len(&self) -> usize {
        self.uv.len()
    }
    pub fn is_empty(&self) -> bool {
        self.uv.is_empty()
    }

    /// Checks lengths and values: finite coordinates and values, finite weights >= 0, not all 0.
    pub fn validate(&self, source: &str) -> Result<()> {
        let m = self.uv.len();
        if self.values.len() != m || self.weights.len() != m {
            return Err(Error::invalid_input(format!("{source}: columns of different lengths")));
        }
        if m == 0 {
            return Err(Error::invalid_input(format!("{source}: no visibilities")));
        }
        for j in 0..m {
            let finite = self.uv[j].iter().chain(&self.values[j]).all(|v| v.is_finite());
            if !finite {
                return Err(Error::invalid_input(format!(
                    "{source}: visibility {j} has a non-finite u, v or value"
                )));
            }
            if !(self.weights[j].is_finite() && self.weights[j] >= 0.0) {
                return Err(Error::invalid_input(format!(
                    "{source}: visibility {j} has weight {}, expected a finite value >= 0",
                    self.weights[j]
                )));
            }
        }
        if self.weights.iter().all(|&w| w == 0.0) {
            return Err(Error::invalid_input(format!("{source}: every visibility has weight 0")));
        }
        Ok(())
    }

    /// The values as interleaved (re, im) float32, the measurement layout of the NUFFT operator.
    pub fn interleaved_values(&self) -> Vec<f32> {
        self.values.iter().flat_map(|&[re, im]| [re as f32, im as f32]).collect()
    }
}

/// Reads a visibility table (see the module documentation for the layouts).
pub fn read(path: &Path) -> Result<VisibilityTable> {
    let source = path.display().to_string();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let table = match ext.as_str() {
        "npy" => {
            let bytes = std::fs::read(path)
                .map_err(|e| Error::invalid_input(format!("cannot read {source}: {e}")))?;
            read_npy(&bytes, &source)?
        }
        "fits" | "fit" | "fts" => read_fits_table(path, &source)?,
        _ => return Err(Error::invalid_input(format!("{source}: unknown visibility format (use .npy)"))),
    };
    table.validate(&source)?;
    Ok(table)
}

/// The first of `names` the table has (case-insensitive).
fn first_column<'t>(table: &'t fits::BinaryTable, names: &[&str]) -> Option<&'t fits::TableColumn> {
    names.iter().find_map(|n| table.column(n))
}

/// One value per row of a real column, in wavelengths when `coordinate`.
fn real_column(
    table: &fits::BinaryTable,
    names: &[&str],
    coordinate: bool,
    source: &str,
) -> Result<Option<Vec<f64>>> {
    let Some(column) = first_column(table, names) else { return Ok(None) };
    if column.repeat != 1 {
        return Err(Error::invalid_input(format!(
            "{source}: column {} holds {} values per row; one visibility per row is expected",
            column.name, column.repeat
        )));
    }
    if coordinate {
        if let Some(unit) = column.unit.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            let u = unit.to_ascii_lowercase();
            if !(u.contains("lambda") || u.contains("wavelength")) {
                return Err(Error::invalid_input(format!(
                    "{source}: column {} is in {unit:?}; u and v must be in wavelengths (TUNIT 'lambda')",
                    column.name
                )));
            }
        }
    }
    Ok(Some(table.real(&column.name)?.to_vec()))
}

fn read_fits_table(path: &Path, source: &str) -> Result<VisibilityTable> {
    let table = match fits::read_binary_table(path, Some("VISIBILITIES")) {
        Ok(t) => t,
        Err(_) => fits::read_binary_table(path, None)?,
    };
    let need = |names: &[&str], what: &str, coordinate: bool| -> Result<Vec<f64>> {
        real_column(&table, names, coordinate, source)?.ok_or_else(|| {
            Error::invalid_input(format!(
                "{source}: the visibility table has no {what} column (one of {names:?})"
            ))
        })
    };
    let u = need(&["U", "UU"], "u", true)?;
    let v = need(&["V", "VV"], "v", true)?;
    let values: Vec<[f64; 2]> = match first_column(&table, &["VIS", "DATA"]) {
        Some(column) => {
            if column.repeat != 1 {
                return Err(Error::invalid_input(format!(
                    "{source}: column {} holds {} values per row; one visibility per row is expected",
                    column.name, column.repeat
                )));
            }
            table.complex(&column.name)?.to_vec()
        }
        None => {
            let re = need(&["RE", "REAL"], "real part", false)?;
            let im = need(&["IM", "IMAG"], "imaginary part", false)?;
            re.into_iter().zip(im).map(|(r, i)| [r, i]).collect()
        }
    };
    let weights =
        real_column(&table, &["WEIGHT", "WEIGHTS"], false, source)?.unwrap_or_else(|| vec![1.0; u.len()]);
    Ok(VisibilityTable { uv: u.into_iter().zip(v).map(|(u, v)| [u, v]).collect(), values, weights })
}

/// Writes the (M, 5) float64 columns layout `u, v, re, im, weight`.
pub fn write_npy(path: &Path, table: &VisibilityTable) -> Result<()> {
    let mut flat = Vec::with_capacity(table.len() * 5);
    for j in 0..table.len() {
        flat.extend_from_slice(&[
            table.uv[j][0],
            table.uv[j][1],
            table.values[j][0],
            table.values[j][1],
            table.weights[j],
        ]);
    }
    let file = std::fs::File::create(path)
        .map_err(|e| Error::invalid_argument(format!("cannot write {}: {e}", path.display())))?;
    let mut writer = npyz::WriteOptions::<f64>::new()
        .default_dtype()
        .shape(&[table.len() as u64, 5])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|e| Error::invalid_argument(format!("cannot write {}: {e}", path.display())))?;
    writer
        .extend(flat)
        .map_err(|e| Error::invalid_argument(format!("cannot write {}: {e}", path.display())))?;
    writer.finish().map_err(|e| Error::invalid_argument(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

/// Reads (u, v) points: a (P, 2) float32 or float64 `.npy` array (what `lofi simulate
/// uv-coverage` writes), in wavelengths.
pub fn read_uv_points(path: &Path) -> Result<Vec<[f64; 2]>> {
    let source = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| Error::invalid_input(format!("cannot read {source}: {e}")))?;
    let bad = |msg: String| Error::invalid_input(format!("{source}: {msg}"));
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(format!("not a .npy file ({e})")))?;
    let fortran = npy.order() == npyz::Order::Fortran;
    let m = match npy.shape() {
        &[m, 2] => m as usize,
        other => return Err(bad(format!("expected (P, 2) (u, v) points, got shape {other:?}"))),
    };
    let descr = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => return Err(bad(format!("expected float32 or float64 points, got {other:?}"))),
    };
    let scalar = Scalar::parse(&descr)
        .filter(|s| !s.complex)
        .ok_or_else(|| bad(format!("expected float32 or float64 points, got {descr}")))?;
    let data = data_bytes(&bytes, m * 2 * scalar.size(), &source)?;
    let at = |j: usize, k: usize| {
        scalar.read(&data[(if fortran { k * m + j } else { 2 * j + k }) * scalar.size()..])
    };
    let points: Vec<[f64; 2]> = (0..m).map(|j| [at(j, 0), at(j, 1)]).collect();
    if let Some(j) = points.iter().position(|p| !(p[0].is_finite() && p[1].is_finite())) {
        return Err(bad(format!("point {j} is not finite")));
    }
    if points.is_empty() {
        return Err(bad("no points".into()));
    }
    Ok(points)
}

/// Writes (u, v) points as a (P, 2) float64 `.npy` array.
pub fn write_uv_points(path: &Path, points: &[[f64; 2]]) -> Result<()> {
    let err = |e: std::io::Error| Error::invalid_argument(format!("cannot write {}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(err)?;
    let mut writer = npyz::WriteOptions::<f64>::new()
        .default_dtype()
        .shape(&[points.len() as u64, 2])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(err)?;
    writer.extend(points.iter().flat_map(|p| [p[0], p[1]])).map_err(err)?;
    writer.finish().map_err(err)
}

/// A scalar numpy type this reader understands: float or complex, little or big endian.
#[derive(Clone, Copy, Debug)]
struct Scalar {
    big_endian: bool,
    complex: bool,
    /// Bytes of one real component (4 or 8).
    width: usize,
}

impl Scalar {
    fn parse(descr: &str) -> Option<Scalar> {
        let (order, rest) = descr.split_at(1);
        let big_endian = match order {
            "<" | "|" | "=" => false,
            ">" => true,
            _ => return None,
        };
        let (complex, width) = match rest {
            "f4" => (false, 4),
            "f8" => (false, 8),
            "c8" => (true, 4),
            "c16" => (true, 8),
            _ => return None,
        };
        Some(Scalar { big_endian, complex, width })
    }
    fn size(&self) -> usize {
        if self.complex {
            2 * self.width
        } else {
            self.width
        }
    }
    fn read(&self, b: &[u8]) -> f64 {
        match (self.width, self.big_endian) {
            (4, false) => f32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as f64,
            (4, true) => f32::from_be_bytes(b[..4].try_into().expect("4 bytes")) as f64,
            (_, false) => f64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            (_, true) => f64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
        }
    }
}

fn read_npy(bytes: &[u8], source: &str) -> Result<VisibilityTable> {
    let bad = |msg: String| Error::invalid_input(format!("{source}: {msg}"));
    let npy = npyz::NpyFile::new(bytes).map_err(|e| bad(format!("not a .npy file ({e})")))?;
    let shape: Vec<u64> = npy.shape().to_vec();
    let fortran = npy.order() == npyz::Order::Fortran;
    match npy.dtype() {
        npyz::DType::Plain(t) => {
            let descr = t.to_string();
            let scalar = Scalar::parse(&descr)
                .filter(|s| !s.complex)
                .ok_or_else(|| bad(format!("columns must be float32 or float64, got {descr}")))?;
            let (m, cols) = match shape.as_slice() {
                &[m, c] if c == 4 || c == 5 => (m as usize, c as usize),
                other => {
                    return Err(bad(format!(
                        "expected (M, 5) columns u, v, re, im, weight (or (M, 4)), got shape {other:?}"
                    )))
                }
            };
            let data = data_bytes(bytes, m * cols * scalar.size(), source)?;
            let at = |j: usize, k: usize| {
                let index = if fortran { k * m + j } else { j * cols + k };
                scalar.read(&data[index * scalar.size()..])
            };
            Ok(VisibilityTable {
                uv: (0..m).map(|j| [at(j, 0), at(j, 1)]).collect(),
                values: (0..m).map(|j| [at(j, 2), at(j, 3)]).collect(),
                weights: (0..m).map(|j| if cols == 5 { at(j, 4) } else { 1.0 }).collect(),
            })
        }
        npyz::DType::Record(fields) => {
            let m = match shape.as_slice() {
                &[m] => m as usize,
                other => {
                    return Err(bad(format!(
                        "a structured visibility array must be 1-D, got shape {other:?}"
                    )))
                }
            };
            // Packed layout: each field's offset is the sum of the sizes before it.
            let mut layout: Vec<(String, Option<Scalar>, usize)> = Vec::new();
            let mut offset = 0usize;
            for f in &fields {
                let (scalar, size) = match &f.dtype {
                    npyz::DType::Plain(t) => {
                        let s = Scalar::parse(&t.to_string());
                        let size = t
                            .num_bytes()
                            .ok_or_else(|| bad(format!("field {}: unsupported type {t}", f.name)))?;
                        (s, size)
                    }
                    _ => (
                        None,
                        f.dtype
                            .num_bytes()
                            .ok_or_else(|| bad(format!("field {}: unsupported type", f.name)))?,
                    ),
                };
                layout.push((f.name.to_ascii_lowercase(), scalar, offset));
                offset += size;
            }
            let record = offset;
            let data = data_bytes(bytes, m * record, source)?;
            let field = |names: &[&str]| -> Option<(Scalar, usize)> {
                layout
                    .iter()
                    .find(|(n, s, _)| s.is_some() && names.contains(&n.as_str()))
                    .map(|(_, s, o)| (s.unwrap(), *o))
            };
            let real = |names: &[&str], what: &str| -> Result<Option<(Scalar, usize)>> {
                match field(names) {
                    Some((s, _)) if s.complex => Err(bad(format!("field {what} must be real"))),
                    other => Ok(other),
                }
            };
            let u = real(&["u"], "u")?.ok_or_else(|| bad("no field 'u'".into()))?;
            let v = real(&["v"], "v")?.ok_or_else(|| bad("no field 'v'".into()))?;
            let weight = real(&["weight", "weights"], "weight")?;
            let get = |(s, o): (Scalar, usize), j: usize, part: usize| {
                s.read(&data[j * record + o + part * s.width..])
            };
            let values: Vec<[f64; 2]> =
                match (field(&["vis", "data"]), real(&["re", "real"], "re")?, real(&["im", "imag"], "im")?) {
                    (Some(vis), _, _) if vis.0.complex => {
                        (0..m).map(|j| [get(vis, j, 0), get(vis, j, 1)]).collect()
                    }
                    (_, Some(re), Some(im)) => (0..m).map(|j| [get(re, j, 0), get(im, j, 0)]).collect(),
                    _ => {
                        return Err(bad("no data: give fields 're' and 'im' or a complex field 'vis'".into()))
                    }
                };
            Ok(VisibilityTable {
                uv: (0..m).map(|j| [get(u, j, 0), get(v, j, 0)]).collect(),
                values,
                weights: (0..m).map(|j| weight.map_or(1.0, |w| get(w, j, 0))).collect(),
            })
        }
        other => Err(bad(format!("unsupported dtype {other:?}"))),
    }
}

/// The `len` data bytes of a .npy file (after its header), or an error for a truncated file.
fn data_bytes<'a>(bytes: &'a [u8], len: usize, source: &str) -> Result<&'a [u8]> {
    // Magic (6), version (2), header length: u16 in version 1, u32 in versions 2 and 3.
    let start = match bytes.get(6) {
        Some(1) if bytes.len() >= 10 => 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize,
        Some(2 | 3) if bytes.len() >= 12 => {
            12 + u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
        }
        _ => return Err(Error::invalid_input(format!("{source}: unknown .npy version"))),
    };
    if start.checked_add(len).is_none_or(|end| end > bytes.len()) {
        return Err(Error::invalid_input(format!("{source}: truncated ({len} data bytes expected)")));
    }
    Ok(&bytes[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A .npy file by hand: header dict + raw little-endian data.
    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn columns_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let table = VisibilityTable {
            uv: vec![[1.5, -2.0], [300.25, 7.0]],
            values: vec![[0.5, -0.25], [1.0, 2.0]],
            weights: vec![1.0, 0.5],
        };
        let path = dir.path().join("v.npy");
        write_npy(&path, &table).unwrap();
        assert_eq!(read(&path).unwrap(), table);
        // (M, 4) float32: weights default to 1.
        let data: Vec<u8> = [1f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, npy("'<f4'", "(1, 4)", &data)).unwrap();
        let t = read(&path).unwrap();
        assert_eq!((t.uv[0], t.values[0], t.weights[0]), ([1.0, 2.0], [3.0, 4.0], 1.0));
        // (u, v) points, float64 and float32.
        let points = vec![[1.25, -3.5], [70000.125, 2.0]];
        write_uv_points(&path, &points).unwrap();
        assert_eq!(read_uv_points(&path).unwrap(), points);
        let data: Vec<u8> = [1f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, npy("'<f4'", "(2, 2)", &data)).unwrap();
        assert_eq!(read_uv_points(&path).unwrap(), vec![[1.0, 2.0], [3.0, 4.0]]);
        std::fs::write(&path, npy("'<f4'", "(1, 4)", &data)).unwrap();
        assert!(read_uv_points(&path).is_err());
    }

    #[test]
    fn structured_arrays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.npy");
        // u f8, v f8, vis c8, weight f4, flag i1 (ignored).
        let mut data = Vec::new();
        for (u, v, re, im, w) in [(10.0f64, -5.0f64, 1.0f32, -1.0f32, 2.0f32), (-3.0, 4.0, 0.5, 0.25, 0.0)] {
            data.extend(u.to_le_bytes());
            data.extend(v.to_le_bytes());
            data.extend(re.to_le_bytes());
            data.extend(im.to_le_bytes());
            data.extend(w.to_le_bytes());
            data.push(0u8);
        }
        let descr = "[('u', '<f8'), ('v', '<f8'), ('vis', '<c8'), ('weight', '<f4'), ('flag', '|i1')]";
        std::fs::write(&path, npy(descr, "(2,)", &data)).unwrap();
        let t = read(&path).unwrap();
        assert_eq!(t.uv, vec![[10.0, -5.0], [-3.0, 4.0]]);
        assert_eq!(t.values, vec![[1.0, -1.0], [0.5, 0.25]]);
        assert_eq!(t.weights, vec![2.0, 0.0]);
    }

    #[test]
    fn bad_tables_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.npy");
        let nan: Vec<u8> = [1f64, f64::NAN, 3.0, 4.0, 1.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        for (descr, shape, data, expect) in [
            ("'<f8'", "(1, 5)", nan.clone(), "non-finite"),
            ("'<f8'", "(1, 3)", nan[..24].to_vec(), "expected (M, 5)"),
            ("'<i4'", "(1, 5)", vec![0u8; 20], "float32 or float64"),
            ("'<f8'", "(2, 5)", nan.clone(), "truncated"),
            ("[('u', '<f8'), ('re', '<f8')]", "(1,)", vec![0u8; 16], "no field 'v'"),
        ] {
            std::fs::write(&path, npy(descr, shape, &data)).unwrap();
            let e = read(&path).unwrap_err().to_string();
            assert!(e.contains(expect), "{descr} {shape}: {e}");
        }
        let neg: Vec<u8> = [1f64, 2.0, 3.0, 4.0, -1.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, npy("'<f8'", "(1, 5)", &neg)).unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("weight -1"));
        let fits = dir.path().join("v.fits");
        std::fs::write(&fits, b"SIMPLE").unwrap();
        assert!(read(&fits).unwrap_err().to_string().contains("FITS"));
        std::fs::write(&path, b"not npy").unwrap();
        assert!(read(&path).is_err());
    }

    /// FITS binary tables written by astropy (scripts/fixtures/make_visibility_fits_fixtures.py)
    /// read as the same values astropy wrote, saved beside them as (M, 5) .npy columns.
    #[test]
    fn fits_tables_written_by_astropy() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/operators");
        for name in ["visibilities_complex", "visibilities_columns"] {
            let table = read(&dir.join(format!("{name}.fits"))).unwrap();
            let expected =
                read(&dir.join(format!("{name}_expected.npy"))).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(table.len(), 37, "{name}");
            assert_eq!(table, expected, "{name}");
        }
        // The flagged row keeps weight 0 (and the file is still valid: others are > 0).
        assert_eq!(read(&dir.join("visibilities_complex.fits")).unwrap().weights[5], 0.0);
        let err = read(&dir.join("visibilities_seconds.fits")).unwrap_err().to_string();
        assert!(err.contains("wavelengths") && err.contains("SECONDS"), "{err}");
    }
}
