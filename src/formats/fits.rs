//! FITS images and binary tables.
//!
//! Reading goes through `fitsrs` (pure Rust, CDS): it finds the HDUs, parses their headers and
//! decodes the big-endian data units. On top of it this module applies BSCALE/BZERO, refuses blank
//! pixels (NaN, or BLANK in integer images), squeezes degenerate axes and keeps the header's cards
//! verbatim so that outputs carry the input's WCS and other keys.
//!
//! Writing is done here: no maintained Rust crate writes FITS without a C library (`fitsrs` only
//! reads; `fitsio` wraps cfitsio, whose bundled build needs autotools and a system zlib, which
//! would also end up inside liblofi.a and the C ABI's link line). A FITS image is 80-character
//! ASCII cards in 2880-byte blocks followed by big-endian samples, so the writer is short; it
//! writes BITPIX = -32 (the reconstruction's own precision) as a primary HDU.
//!
//! Orientation: rows are kept in file order, as astropy's `hdu.data` has them (row 0 is FITS
//! pixel y = 1, which viewers such as ds9 show at the bottom). Pixel (row r, column c) of an
//! [`Image`] is FITS pixel (c + 1, r + 1).

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::Path;

use fitsrs::hdu::data::bintable::DataValue;
use fitsrs::{Fits, Pixels, HDU};

use crate::error::{Error, Result};
use crate::image_io::{Image, MAX_SIDE};

const BLOCK: usize = 2880;
const CARD: usize = 80;

/// Whether the path names a FITS file (`.fits`, `.fit`, `.fts`, any case).
pub fn is_fits_path(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    matches!(ext.as_str(), "fits" | "fit" | "fts")
}

/// The header of a FITS image, kept card for card (80 ASCII characters each) so that it can be
/// written again: every card of the input except the structural ones that describe the data
/// layout (SIMPLE, BITPIX, NAXISn, BSCALE, BZERO, BLANK, checksums, ...), which the writer makes
/// anew for the data it writes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FitsHeader {
    cards: Vec<String>,
    /// The input's axis lengths, NAXIS1 first (empty when the header did not come from a file).
    axes: Vec<usize>,
    /// Which of `axes` hold the columns and (if any) the rows; the others have length 1.
    column_axis: usize,
    row_axis: Option<usize>,
}

/// A FITS image read from a file: the pixels (physical values, BSCALE/BZERO applied, one
/// channel) and the header to carry to outputs.
#[derive(Clone, Debug)]
pub struct FitsImage {
    pub image: Image,
    pub header: FitsHeader,
    /// BITPIX of the file (8, 16, 32, 64, -32 or -64).
    pub bitpix: i64,
    /// Index of the HDU the image came from (0: the primary HDU).
    pub hdu: usize,
}

/// Keywords that describe the data layout of an HDU: never carried, the writer writes its own.
fn is_structural(keyword: &str) -> bool {
    const FIXED: &[&str] = &[
        "SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "BSCALE", "BZERO", "BLANK",
        "DATAMIN", "DATAMAX", "CHECKSUM", "DATASUM", "END", "EXTNAME", "EXTVER", "EXTLEVEL", "INHERIT",
        "GROUPS", "TFIELDS", "THEAP",
    ];
    if FIXED.contains(&keyword) {
        return true;
    }
    // NAXISn (and the table keys that cannot occur in an image header but would be wrong if they did).
    ["NAXIS", "TFORM", "TTYPE", "TBCOL", "TDIM"].iter().any(|prefix| {
        keyword.strip_prefix(prefix).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The keyword of a card: its first 8 characters, trimmed.
fn card_keyword(card: &str) -> &str {
    card.get(..8).unwrap_or(card).trim_end()
}

/// The value text of a `KEY     = value / comment` card (quotes kept for strings), or None when
/// the card has no value indicator.
fn card_value(card: &str) -> Option<&str> {
    if card.get(8..10) != Some("= ") {
        return None;
    }
    let rest = &card[10..];
    let rest = rest.trim_start();
    if let Some(quoted) = rest.strip_prefix('\'') {
        // A string: up to the closing quote that is not doubled.
        let bytes = quoted.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\'' {
                if bytes.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                return Some(&rest[..i + 2]);
            }
            i += 1;
        }
        return Some(rest);
    }
    Some(rest.split('/').next().unwrap_or("").trim())
}

/// Parses a FITS number (a 'D' exponent is allowed).
fn parse_number(text: &str) -> Option<f64> {
    text.trim().replace(['D', 'd'], "E").parse::<f64>().ok()
}

/// A FITS real: shortest round-trip digits, upper-case exponent, always a decimal point.
fn format_real(value: f64) -> String {
    let text = format!("{value:E}");
    match text.split_once('E') {
        Some((mantissa, exponent)) if !mantissa.contains('.') => format!("{mantissa}.0E{exponent}"),
        _ => text,
    }
}

/// A `KEY     = value` card padded to 80 characters (value right-aligned in columns 11-30).
fn value_card(keyword: &str, value: &str, comment: Option<&str>) -> String {
    let mut card = format!("{keyword:<8}= {value:>20}");
    if let Some(c) = comment {
        card.push_str(" / ");
        card.push_str(c);
    }
    pad_card(card)
}

fn pad_card(mut card: String) -> String {
    card.truncate(CARD);
    while card.len() < CARD {
        card.push(' ');
    }
    card
}

impl FitsHeader {
    /// An empty header (no carried cards), for outputs whose input was not a FITS file.
    pub fn new() -> FitsHeader {
        FitsHeader::default()
    }

    /// The carried cards, 80 characters each, in the input's order.
    pub fn cards(&self) -> impl Iterator<Item = &str> + '_ {
        self.cards.iter().map(String::as_str)
    }

    /// The value text of the last card with this keyword (strings keep their quotes), if any.
    pub fn value(&self, keyword: &str) -> Option<&str> {
        self.cards.iter().rev().find(|c| card_keyword(c) == keyword).and_then(|c| card_value(c))
    }

    /// The numeric value of a keyword, if present and a number.
    pub fn number(&self, keyword: &str) -> Option<f64> {
        self.value(keyword).and_then(parse_number)
    }

    /// A string value without its quotes and trailing blanks.
    pub fn string(&self, keyword: &str) -> Option<String> {
        let v = self.value(keyword)?;
        let inner = v.strip_prefix('\'')?.strip_suffix('\'')?;
        Some(inner.replace("''", "'").trim_end().to_string())
    }

    /// Appends HISTORY cards holding `text` (split into 72-character pieces; non-ASCII characters
    /// become '?', as FITS headers are ASCII).
    pub fn add_history(&mut self, text: &str) {
        let ascii: String =
            text.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' }).collect();
        let chars: Vec<char> = ascii.chars().collect();
        if chars.is_empty() {
            self.cards.push(pad_card("HISTORY".into()));
        }
        for piece in chars.chunks(CARD - 8) {
            self.cards.push(pad_card(format!("HISTORY {}", piece.iter().collect::<String>())));
        }
    }

    /// Sets (replaces or appends) a numeric card.
    fn set_number(&mut self, keyword: &str, value: f64) {
        let card = value_card(keyword, &format_real(value), None);
        match self.cards.iter().position(|c| card_keyword(c) == keyword) {
            Some(i) => {
                // Keep the comment of the card it replaces.
                let comment = self.cards[i].split_once(" / ").map(|(_, c)| c.trim_end().to_string());
                self.cards[i] = value_card(keyword, &format_real(value), comment.as_deref());
            }
            None => self.cards.push(card),
        }
    }

    /// Re-expresses the world coordinates for an output grid sampled from the input's pixels:
    /// output column j (0-based) lies at input column `x0 + j * step_x`, output row i at input row
    /// `y0 + i * step_y` (as `lofi reconstruct --region/--width/--height` samples). CRPIX moves and
    /// the pixel scale (CDELT, or the CD matrix's columns) is multiplied by the steps, so that every
    /// output pixel keeps the sky position of the input point it was reconstructed at.
    pub fn resample(&mut self, x0: f64, step_x: f64, y0: f64, step_y: f64) {
        if self.axes.is_empty() || (x0 == 0.0 && y0 == 0.0 && step_x == 1.0 && step_y == 1.0) {
            return;
        }
        let mut axes = vec![(self.column_axis + 1, x0, step_x)];
        if let Some(r) = self.row_axis {
            axes.push((r + 1, y0, step_y));
        }
        let has_cd =
            self.cards.iter().any(|c| card_keyword(c).starts_with("CD") && card_keyword(c).contains('_'));
        let naxis = self.axes.len();
        for (n, offset, step) in axes {
            // Input FITS pixel p (1-based) = offset + 1 + step * (q - 1) for output pixel q; with
            // (p - CRPIX) = step * (q - CRPIX') the new reference pixel is:
            let crpix = self.number(&format!("CRPIX{n}")).unwrap_or(0.0);
            self.set_number(&format!("CRPIX{n}"), (crpix - offset - 1.0 + step) / step);
            if has_cd {
                for i in 1..=naxis {
                    let key = format!("CD{i}_{n}");
                    if let Some(v) = self.number(&key) {
                        self.set_number(&key, v * step);
                    }
                }
            } else {
                let key = format!("CDELT{n}");
                let cdelt = self.number(&key).unwrap_or(1.0);
                self.set_number(&key, cdelt * step);
            }
        }
    }

    /// The axis lengths to write for an image of `height` x `width` x `channels`: the input's
    /// layout (degenerate axes kept, so its WCS still applies) with the image's sizes, and a
    /// last axis of `channels` planes when there are several.
    fn output_axes(&self, height: usize, width: usize, channels: usize) -> Vec<usize> {
        let mut axes = if self.axes.is_empty() {
            vec![width, height]
        } else {
            let mut axes = self.axes.clone();
            axes[self.column_axis] = width;
            match self.row_axis {
                Some(r) => axes[r] = height,
                None if height != 1 => axes.insert(self.column_axis + 1, height),
                None => {}
            }
            axes
        };
        if channels > 1 {
            axes.push(channels);
        }
        axes
    }
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("{}: {what}", path.display()))
}

/// The raw header cards of the HDU whose header spans `bytes[start..end]`.
fn raw_cards(bytes: &[u8], start: usize, end: usize) -> Vec<String> {
    let mut cards = Vec::new();
    for chunk in bytes[start.min(bytes.len())..end.min(bytes.len())].chunks_exact(CARD) {
        let card: String =
            chunk.iter().map(|&b| if (32..127).contains(&b) { b as char } else { '?' }).collect();
        if card_keyword(&card) == "END" {
            break;
        }
        cards.push(card);
    }
    cards
}

fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// Reads the first image of a FITS file: the primary HDU if it holds data, else the first IMAGE
/// extension. Integer data are scaled to physical values (BZERO + BSCALE * stored). Refused with a
/// message naming the file: blank pixels (NaN, or BLANK in integer images; the count is given),
/// infinite values, truncated files, cubes (more than two axes longer than 1) and files without
/// an image.
pub fn read_image(path: &Path) -> Result<FitsImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    super::guard(path, || read_image_bytes(path, &bytes))
}

fn read_image_bytes(path: &Path, bytes: &[u8]) -> Result<FitsImage> {
    if !bytes.starts_with(b"SIMPLE  =") {
        return Err(bad(path, "not a FITS file (it does not start with SIMPLE =)"));
    }
    let mut reader = Cursor::new(bytes);
    let mut fits = Fits::from_reader(&mut reader);
    // Where the current HDU's header starts: 0 for the primary, then after each padded data unit.
    let mut header_start = 0u64;
    let mut index = 0usize;
    while let Some(hdu) = fits.next() {
        let hdu = hdu.map_err(|e| bad(path, format!("cannot parse HDU {index} ({e})")))?;
        let (offset, size) = match &hdu {
            HDU::Primary(h) | HDU::XImage(h) => (h.get_data_unit_byte_offset(), h.get_data_unit_byte_size()),
            HDU::XBinaryTable(h) => (h.get_data_unit_byte_offset(), h.get_data_unit_byte_size()),
            HDU::XASCIITable(h) => (h.get_data_unit_byte_offset(), h.get_data_unit_byte_size()),
        };
        if let HDU::Primary(h) | HDU::XImage(h) = &hdu {
            let naxis: Vec<usize> =
                h.get_header().get_xtension().get_naxis().iter().map(|&n| n as usize).collect();
            if !naxis.is_empty() && naxis.iter().all(|&n| n > 0) {
                let header = h.get_header();
                let bitpix = header.get_parsed::<i64>("BITPIX").unwrap_or(0);
                let bscale = header.get_parsed::<f64>("BSCALE").unwrap_or(1.0);
                let bzero = header.get_parsed::<f64>("BZERO").unwrap_or(0.0);
                let blank = header.get_parsed::<i64>("BLANK").ok();
                if offset + size > bytes.len() as u64 {
                    return Err(bad(
                        path,
                        format!(
                            "truncated: HDU {index}'s data need {size} bytes from byte {offset}, the file has {}",
                            bytes.len()
                        ),
                    ));
                }
                let cards = raw_cards(bytes, header_start as usize, offset as usize);
                let image_pixels = fits.get_data(h).pixels();
                let layout = Layout::new(path, &naxis)?;
                let expected = layout.height * layout.width;
                let physical = |v: f64| bzero + bscale * v;
                let (data, blanks): (Vec<f32>, usize) = match image_pixels {
                    Pixels::U8(it) => integers(it.map(i64::from), blank, physical),
                    Pixels::I16(it) => integers(it.map(i64::from), blank, physical),
                    Pixels::I32(it) => integers(it.map(i64::from), blank, physical),
                    Pixels::I64(it) => integers(it, blank, physical),
                    Pixels::F32(it) => floats(it.map(f64::from), physical),
                    Pixels::F64(it) => floats(it, physical),
                };
                if data.len() != expected {
                    return Err(bad(
                        path,
                        format!("truncated: {} of {expected} pixels could be read", data.len()),
                    ));
                }
                if blanks > 0 {
                    return Err(bad(
                        path,
                        format!(
                            "{blanks} of {expected} pixels are blank ({}); lofi needs every pixel: fill or \
                             inpaint them first (e.g. `lofi pnp --operator inpaint` with a mask)",
                            if bitpix < 0 {
                                "NaN".to_string()
                            } else {
                                format!("BLANK = {}", blank.unwrap_or(0))
                            }
                        ),
                    ));
                }
                let image = Image::new(layout.height, layout.width, 1, data).map_err(|e| bad(path, e))?;
                image.check_finite().map_err(|e| bad(path, e))?;
                let header = FitsHeader {
                    cards: cards.into_iter().filter(|c| !is_structural(card_keyword(c))).collect(),
                    axes: naxis,
                    column_axis: layout.column_axis,
                    row_axis: layout.row_axis,
                };
                return Ok(FitsImage { image, header, bitpix, hdu: index });
            }
        }
        header_start = offset + padded(size);
        index += 1;
    }
    Err(bad(path, "holds no image (no HDU with NAXIS >= 1 and data)"))
}

/// Which FITS axes make the 2-D image.
struct Layout {
    height: usize,
    width: usize,
    column_axis: usize,
    row_axis: Option<usize>,
}

impl Layout {
    fn new(path: &Path, naxis: &[usize]) -> Result<Layout> {
        let long: Vec<usize> = (0..naxis.len()).filter(|&i| naxis[i] > 1).collect();
        let (column_axis, row_axis) = match long.as_slice() {
            // No axis (or one) longer than 1: the first two axes, whatever their lengths.
            [] | [0] => (0, (naxis.len() > 1).then_some(1)),
            // A single long axis other than the first: an image one column wide.
            [r] => (0, Some(*r)),
            [c, r] => (*c, Some(*r)),
            _ => {
                return Err(bad(
                    path,
                    format!(
                        "is a cube of {} axes longer than 1 ({}): lofi reconstructs 2-D images; extract a plane first",
                        long.len(),
                        naxis.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" x ")
                    ),
                ))
            }
        };
        let width = naxis[column_axis];
        let height = row_axis.map_or(1, |r| naxis[r]);
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(bad(
                path,
                format!("an image of {width} x {height} is larger than {MAX_SIDE} on a side"),
            ));
        }
        Ok(Layout { height, width, column_axis, row_axis })
    }
}

fn integers(
    values: impl Iterator<Item = i64>,
    blank: Option<i64>,
    physical: impl Fn(f64) -> f64,
) -> (Vec<f32>, usize) {
    let mut blanks = 0;
    let data = values
        .map(|v| {
            if Some(v) == blank {
                blanks += 1;
                f32::NAN
            } else {
                physical(v as f64) as f32
            }
        })
        .collect();
    (data, blanks)
}

fn floats(values: impl Iterator<Item = f64>, physical: impl Fn(f64) -> f64) -> (Vec<f32>, usize) {
    let mut blanks = 0;
    let data = values
        .map(|v| {
            if v.is_nan() {
                blanks += 1;
            }
            physical(v) as f32
        })
        .collect();
    (data, blanks)
}

/// Writes `image` as a FITS primary HDU with BITPIX = -32: the header's carried cards (WCS and
/// the rest of the input's keys, HISTORY added by the caller) after the structural keys. An image
/// of several channels is written as planes along a last axis.
pub fn write_image(path: &Path, image: &Image, header: &FitsHeader) -> Result<()> {
    let axes = header.output_axes(image.height, image.width, image.channels);
    let mut cards = vec![
        value_card("SIMPLE", "T", Some("conforms to FITS standard")),
        value_card("BITPIX", "-32", Some("IEEE single precision")),
        value_card("NAXIS", &axes.len().to_string(), None),
    ];
    for (i, n) in axes.iter().enumerate() {
        cards.push(value_card(&format!("NAXIS{}", i + 1), &n.to_string(), None));
    }
    cards.extend(header.cards.iter().cloned());
    cards.push(pad_card("END".into()));
    let mut out = Vec::with_capacity(cards.len() * CARD + image.data.len() * 4 + 2 * BLOCK);
    for card in &cards {
        out.extend_from_slice(card.as_bytes());
    }
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, b' ');
    // FITS stores planes one after another; the Image is interleaved (H, W, C).
    for c in 0..image.channels {
        for v in image.data.iter().skip(c).step_by(image.channels) {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    let io_err = |e| Error::io(format!("cannot write {}", path.display()), e);
    let mut file = std::fs::File::create(path).map_err(io_err)?;
    file.write_all(&out).map_err(io_err)?;
    file.flush().map_err(io_err)
}

/// The values of one binary-table column, `rows * repeat` of them (row-major: the `repeat`
/// values of row 0 first). Integers and logicals (1/0) become f64, TSCALn/TZEROn applied.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnValues {
    Real(Vec<f64>),
    /// (real, imaginary) pairs.
    Complex(Vec<[f64; 2]>),
    /// Character columns: one string per row, trailing blanks removed.
    Text(Vec<String>),
}

/// One column of a binary table.
#[derive(Clone, Debug, PartialEq)]
pub struct TableColumn {
    /// TTYPEn (or "COLn" when unnamed).
    pub name: String,
    /// TUNITn, if given.
    pub unit: Option<String>,
    /// Values per row (the repeat count of TFORMn).
    pub repeat: usize,
    pub values: ColumnValues,
}

/// A FITS binary table read into memory, column by column.
#[derive(Clone, Debug, PartialEq)]
pub struct BinaryTable {
    /// EXTNAME of the HDU, if any.
    pub name: Option<String>,
    pub rows: usize,
    pub columns: Vec<TableColumn>,
}

impl BinaryTable {
    /// The column of this name (FITS names compare case-insensitively).
    pub fn column(&self, name: &str) -> Option<&TableColumn> {
        self.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// A numeric column as f64 values (`rows * repeat` of them); an error naming the column if it
    /// is missing or not real-valued.
    pub fn real(&self, name: &str) -> Result<&[f64]> {
        match self.column(name).map(|c| &c.values) {
            Some(ColumnValues::Real(v)) => Ok(v),
            Some(_) => Err(Error::invalid_input(format!("column {name} of the table is not real-valued"))),
            None => Err(self.missing(name)),
        }
    }

    /// A complex column as (re, im) pairs.
    pub fn complex(&self, name: &str) -> Result<&[[f64; 2]]> {
        match self.column(name).map(|c| &c.values) {
            Some(ColumnValues::Complex(v)) => Ok(v),
            Some(_) => {
                Err(Error::invalid_input(format!("column {name} of the table is not complex (TFORM C or M)")))
            }
            None => Err(self.missing(name)),
        }
    }

    fn missing(&self, name: &str) -> Error {
        Error::invalid_input(format!(
            "the table has no column {name} (it has {})",
            self.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ))
    }
}

/// Reads a binary table (BINTABLE extension) of a FITS file: the one whose EXTNAME is `extname`
/// (case-insensitive), or the first when `extname` is None. Numeric columns (B, I, J, K, E, D, L)
/// come as f64, complex ones (C, M) as pairs, character ones (A) as strings; bit (X) and
/// variable-length (P, Q) columns are refused with a message naming them.
pub fn read_binary_table(path: &Path, extname: Option<&str>) -> Result<BinaryTable> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    super::guard(path, || read_table_bytes(path, &bytes, extname))
}

fn read_table_bytes(path: &Path, bytes: &[u8], extname: Option<&str>) -> Result<BinaryTable> {
    if !bytes.starts_with(b"SIMPLE  =") {
        return Err(bad(path, "not a FITS file (it does not start with SIMPLE =)"));
    }
    let mut reader = Cursor::new(bytes);
    let mut fits = Fits::from_reader(&mut reader);
    let mut index = 0usize;
    let mut seen = Vec::new();
    while let Some(hdu) = fits.next() {
        let hdu = hdu.map_err(|e| bad(path, format!("cannot parse HDU {index} ({e})")))?;
        if let HDU::XBinaryTable(h) = &hdu {
            let header = h.get_header();
            let name = header.get_parsed::<String>("EXTNAME").ok().map(|s| s.trim_end().to_string());
            let wanted = match (extname, &name) {
                (None, _) => true,
                (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
                (Some(_), None) => false,
            };
            seen.push(name.clone().unwrap_or_else(|| format!("HDU {index}")));
            if wanted {
                let (offset, size) = (h.get_data_unit_byte_offset(), h.get_data_unit_byte_size());
                if offset + size > bytes.len() as u64 {
                    return Err(bad(
                        path,
                        format!(
                            "truncated: the table needs {size} bytes from byte {offset}, the file has {}",
                            bytes.len()
                        ),
                    ));
                }
                let xt = header.get_xtension();
                let (rows, ncols) = (xt.get_num_rows(), xt.get_num_cols());
                let mut columns = Vec::with_capacity(ncols);
                for i in 1..=ncols {
                    let text = |key: &str| {
                        header
                            .get_parsed::<String>(&format!("{key}{i}"))
                            .ok()
                            .map(|s| s.trim_end().to_string())
                    };
                    let number = |key: &str| header.get_parsed::<f64>(&format!("{key}{i}")).ok();
                    let tform = text("TFORM").unwrap_or_default();
                    let digits: String = tform.trim().chars().take_while(|c| c.is_ascii_digit()).collect();
                    let code =
                        tform.trim()[digits.len()..].chars().next().unwrap_or(' ').to_ascii_uppercase();
                    let repeat = if digits.is_empty() { 1 } else { digits.parse::<usize>().unwrap_or(1) };
                    let name = text("TTYPE").unwrap_or_else(|| format!("COL{i}"));
                    let values = match code {
                        'C' | 'M' => ColumnValues::Complex(Vec::with_capacity(rows * repeat)),
                        'A' => ColumnValues::Text(Vec::with_capacity(rows)),
                        'B' | 'I' | 'J' | 'K' | 'E' | 'D' | 'L' => {
                            ColumnValues::Real(Vec::with_capacity(rows * repeat))
                        }
                        other => {
                            return Err(bad(
                                path,
                                format!(
                                    "column {name} has TFORM '{tform}' ({other}), which lofi does not read"
                                ),
                            ))
                        }
                    };
                    columns.push((
                        TableColumn { name, unit: text("TUNIT"), repeat, values },
                        number("TSCAL").unwrap_or(1.0),
                        number("TZERO").unwrap_or(0.0),
                        String::new(),
                    ));
                }
                let mut read_rows = 0usize;
                for row in fits.get_data(h).row_iter() {
                    for value in row.iter() {
                        let (col, v) = match value {
                            // fitsrs 0.4 takes any non-zero byte as true, 'F' included: logicals
                            // are read from the raw bytes below instead.
                            DataValue::Logical { .. } => continue,
                            DataValue::UnsignedByte { value, column, .. } => (column, f64::from(*value)),
                            DataValue::Short { value, column, .. } => (column, f64::from(*value)),
                            DataValue::Integer { value, column, .. } => (column, f64::from(*value)),
                            DataValue::Long { value, column, .. } => (column, *value as f64),
                            DataValue::Float { value, column, .. } => (column, f64::from(*value)),
                            DataValue::Double { value, column, .. } => (column, *value),
                            DataValue::ComplexFloat { real, imag, column, .. } => {
                                let (c, scale, zero) = column_at(&mut columns, column)?;
                                if let ColumnValues::Complex(v) = &mut c.values {
                                    v.push([zero + scale * f64::from(*real), scale * f64::from(*imag)]);
                                }
                                continue;
                            }
                            DataValue::ComplexDouble { real, imag, column, .. } => {
                                let (c, scale, zero) = column_at(&mut columns, column)?;
                                if let ColumnValues::Complex(v) = &mut c.values {
                                    v.push([zero + scale * real, scale * imag]);
                                }
                                continue;
                            }
                            DataValue::Character { value, column, .. } => {
                                let i = column_index(column)?;
                                if let Some(entry) = columns.get_mut(i) {
                                    entry.3.push(*value);
                                }
                                continue;
                            }
                            DataValue::Bit { .. }
                            | DataValue::VariableLengthArray32 { .. }
                            | DataValue::VariableLengthArray64 { .. } => {
                                return Err(bad(path, "the table holds bit or variable-length columns, which lofi does not read"));
                            }
                        };
                        let (c, scale, zero) = column_at(&mut columns, col)?;
                        if let ColumnValues::Real(values) = &mut c.values {
                            values.push(zero + scale * v);
                        }
                    }
                    // Character columns: one string per row.
                    for (c, _, _, pending) in columns.iter_mut() {
                        if let ColumnValues::Text(v) = &mut c.values {
                            v.push(pending.trim_end_matches([' ', '\0']).to_string());
                            pending.clear();
                        }
                    }
                    read_rows += 1;
                }
                if read_rows != rows {
                    return Err(bad(
                        path,
                        format!("truncated: {read_rows} of {rows} table rows could be read"),
                    ));
                }
                let mut columns: Vec<TableColumn> = columns.into_iter().map(|(c, ..)| c).collect();
                read_logicals(&bytes[offset as usize..(offset + size) as usize], header, rows, &mut columns)
                    .map_err(|e| bad(path, e))?;
                for c in &columns {
                    let (have, want) = match &c.values {
                        ColumnValues::Real(v) => (v.len(), rows * c.repeat),
                        ColumnValues::Complex(v) => (v.len(), rows * c.repeat),
                        ColumnValues::Text(v) => (v.len(), rows),
                    };
                    if have != want {
                        return Err(bad(
                            path,
                            format!("column {} holds {have} values, {rows} rows need {want}", c.name),
                        ));
                    }
                }
                return Ok(BinaryTable { name, rows, columns });
            }
        }
        index += 1;
    }
    Err(bad(
        path,
        match extname {
            Some(n) => format!(
                "has no binary table named {n} (binary tables: {})",
                if seen.is_empty() { "none".into() } else { seen.join(", ") }
            ),
            None => "holds no binary table".to_string(),
        },
    ))
}

type PendingColumn = (TableColumn, f64, f64, String);

/// Bytes per element of a TFORM type code (bit columns: per 8 elements, rounded up by the caller).
fn tform_size(code: char) -> Option<usize> {
    Some(match code {
        'L' | 'B' | 'A' | 'X' => 1,
        'I' => 2,
        'J' | 'E' => 4,
        'K' | 'D' | 'C' | 'P' => 8,
        'M' | 'Q' => 16,
        _ => return None,
    })
}

/// Fills the logical (L) columns from the table's raw rows: 'T' is 1, 'F' and null (0) are 0.
fn read_logicals(
    data: &[u8],
    header: &fitsrs::hdu::header::Header<fitsrs::hdu::header::extension::bintable::BinTable>,
    rows: usize,
    columns: &mut [TableColumn],
) -> std::result::Result<(), String> {
    let row_bytes = header.get_parsed::<i64>("NAXIS1").map_err(|_| "NAXIS1 missing".to_string())? as usize;
    let mut start = 0usize;
    for (i, column) in columns.iter_mut().enumerate() {
        let tform = header.get_parsed::<String>(&format!("TFORM{}", i + 1)).unwrap_or_default();
        let tform = tform.trim();
        let digits: String = tform.chars().take_while(|c| c.is_ascii_digit()).collect();
        let code = tform[digits.len()..].chars().next().unwrap_or(' ').to_ascii_uppercase();
        let repeat = if digits.is_empty() {
            1
        } else {
            digits.parse::<usize>().map_err(|_| format!("TFORM{} '{tform}'", i + 1))?
        };
        let size = tform_size(code)
            .ok_or_else(|| format!("TFORM{} '{tform}' is not a binary-table format", i + 1))?;
        let width = if code == 'X' { repeat.div_ceil(8) } else { repeat * size };
        if code == 'L' {
            let mut values = Vec::with_capacity(rows * repeat);
            for r in 0..rows {
                let at = r * row_bytes + start;
                let cells = data.get(at..at + repeat).ok_or("truncated table data")?;
                values.extend(cells.iter().map(|&b| if b == b'T' { 1.0 } else { 0.0 }));
            }
            column.values = ColumnValues::Real(values);
        }
        start += width;
    }
    if start > row_bytes {
        return Err(format!("the columns need {start} bytes per row, NAXIS1 is {row_bytes}"));
    }
    Ok(())
}

fn column_index(column: &fitsrs::hdu::data::bintable::ColumnId) -> Result<usize> {
    match column {
        fitsrs::hdu::data::bintable::ColumnId::Index(i) => Ok(*i),
        fitsrs::hdu::data::bintable::ColumnId::Name(n) => {
            Err(Error::Internal(format!("fitsrs named a column ({n}) where an index was expected")))
        }
    }
}

fn column_at<'a>(
    columns: &'a mut [PendingColumn],
    column: &fitsrs::hdu::data::bintable::ColumnId,
) -> Result<(&'a mut TableColumn, f64, f64)> {
    let i = column_index(column)?;
    let len = columns.len();
    let (c, scale, zero, _) =
        columns.get_mut(i).ok_or_else(|| Error::Internal(format!("column index {i} of {len}")))?;
    Ok((c, *scale, *zero))
}

/// A map from keyword to value text of the carried cards, for tests and diagnostics.
pub fn header_values(header: &FitsHeader) -> BTreeMap<String, String> {
    header
        .cards
        .iter()
        .filter_map(|c| card_value(c).map(|v| (card_keyword(c).to_string(), v.to_string())))
        .collect()
}
