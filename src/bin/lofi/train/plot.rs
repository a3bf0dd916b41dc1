//! PNG figures: the training curves (loss and test PSNR against the step) and sample
//! reconstructions (observation | LoFi | truth). Text uses the bundled DejaVu Sans Mono font
//! (assets/fonts, Bitstream Vera licence) through ab_glyph, so no system font library is needed.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use lofi::image_io::Image;
use plotters::prelude::*;
use plotters::style::FontStyle;

static FONT: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSansMono.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            log::warn!("the bundled font could not be loaded; figures will have no text");
        }
    });
}

fn save_rgb(path: &Path, width: u32, height: u32, buf: Vec<u8>) -> Result<()> {
    let img = image::RgbImage::from_raw(width, height, buf).ok_or_else(|| anyhow!("figure buffer size"))?;
    img.save(path).map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
}

/// A series of (step, value) points with its label.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: &'a [(u64, f64)],
}

fn bounds(points: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = points
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    (lo <= hi).then_some((lo, hi))
}

/// One chart: series against the step (or iteration), optionally on a log scale, with an
/// optional horizontal reference line.
pub struct Panel<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    /// Plot log10 of the values (labelled with the values themselves); non-positive values are
    /// left out.
    pub log_y: bool,
    pub series: Vec<Series<'a>>,
    pub reference: Option<(&'a str, f64)>,
}

const COLOURS: [RGBColor; 5] = [BLUE, RED, GREEN, MAGENTA, CYAN];

/// Panels side by side in one PNG.
pub fn panels(path: &Path, panels: &[Panel<'_>]) -> Result<()> {
    register_font();
    let (w, h) = (600 * panels.len().max(1) as u32, 450u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let areas = root.split_evenly((1, panels.len().max(1)));
        let e = |e: plotters::drawing::DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e}", path.display());
        for (k, (panel, area)) in panels.iter().zip(&areas).enumerate() {
            let map = |v: f64| if panel.log_y { v.log10() } else { v };
            let keep = |v: f64| v.is_finite() && (!panel.log_y || v > 0.0);
            let series: Vec<(&str, Vec<(f64, f64)>)> = panel
                .series
                .iter()
                .map(|s| {
                    (
                        s.label,
                        s.points.iter().filter(|p| keep(p.1)).map(|&(x, y)| (x as f64, map(y))).collect(),
                    )
                })
                .collect();
            let reference = panel.reference.filter(|r| keep(r.1)).map(|(l, v)| (l, map(v)));
            let ys = series.iter().flat_map(|s| s.1.iter().map(|p| p.1)).chain(reference.map(|r| r.1));
            let Some((lo, hi)) = bounds(ys) else { continue };
            let last = series.iter().flat_map(|s| s.1.iter().map(|p| p.0)).fold(1f64, f64::max);
            let pad = if panel.log_y { ((hi - lo) * 0.05).max(0.01) } else { ((hi - lo) * 0.1).max(0.5) };
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, (FAMILY, 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(0f64..last, lo - pad..hi + pad)
                .map_err(e)?;
            let log_y = panel.log_y;
            let y_label = move |y: &f64| {
                if log_y {
                    let v = 10f64.powf(*y);
                    if (1e-3..1e4).contains(&v) {
                        format!("{v:.4}")
                    } else {
                        format!("{v:.2e}")
                    }
                } else {
                    format!("{y:.1}")
                }
            };
            chart
                .configure_mesh()
                .x_desc(panel.x_desc)
                .y_desc(panel.y_desc)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&y_label)
                .label_style((FAMILY, 13))
                .draw()
                .map_err(e)?;
            let many = series.len() > 1 || reference.is_some();
            for (i, (label, pts)) in series.iter().enumerate() {
                let colour = COLOURS[(k + i) % COLOURS.len()];
                let drawn = chart
                    .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
                    .map_err(e)?;
                if many {
                    drawn
                        .label(*label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
                }
                if pts.len() <= 50 {
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled()))).map_err(e)?;
                }
            }
            if let Some((label, v)) = reference {
                chart
                    .draw_series(LineSeries::new([(0.0, v), (last, v)], BLACK.stroke_width(1)))
                    .map_err(e)?
                    .label(label)
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
            }
            if many {
                chart
                    .configure_series_labels()
                    .label_font((FAMILY, 13))
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(e)?;
            }
        }
        root.present().map_err(e)?;
    }
    save_rgb(path, w, h, buf)
}

/// The training figure: the loss (log scale) and the evaluation PSNR per split, against the step.
pub fn curves(path: &Path, loss: &[(u64, f64)], psnr: &[Series<'_>]) -> Result<()> {
    panels(
        path,
        &[
            Panel {
                title: "training loss (L1, log scale)",
                x_desc: "step",
                y_desc: "loss",
                log_y: true,
                series: vec![Series { label: "loss", points: loss }],
                reference: None,
            },
            Panel {
                title: "test PSNR (dB)",
                x_desc: "step",
                y_desc: "PSNR",
                log_y: false,
                series: psnr.iter().map(|s| Series { label: s.label, points: s.points }).collect(),
                reference: None,
            },
        ],
    )
}

/// The plug-and-play figure (`lofi pnp`): the primal residual (log scale) and the PSNR against the
/// iteration, with the PSNR of the starting point (`A^T y`) as a reference line.
pub fn pnp_curves(
    path: &Path,
    primal: &[(u64, f64)],
    psnr: &[(u64, f64)],
    baseline: Option<f64>,
) -> Result<()> {
    let mut list = vec![Panel {
        title: "primal residual (log scale)",
        x_desc: "iteration",
        y_desc: "residual",
        log_y: true,
        series: vec![Series { label: "primal", points: primal }],
        reference: None,
    }];
    if !psnr.is_empty() {
        list.push(Panel {
            title: "PSNR (dB)",
            x_desc: "iteration",
            y_desc: "PSNR",
            log_y: false,
            series: vec![Series { label: "LoFi-ADMM", points: psnr }],
            reference: baseline.map(|b| ("A^T y", b)),
        });
    }
    panels(path, &list)
}

/// 8-bit RGB pixels of `img` scaled from [lo, hi] to [0, 255]: RGB images as they are, others
/// by their first channel in gray.
fn display(img: &Image, lo: f64, hi: f64) -> Vec<[u8; 3]> {
    let scale = if hi > lo { 1.0 / (hi - lo) } else { 1.0 };
    let q = |v: f32| (((v as f64 - lo) * scale).clamp(0.0, 1.0) * 255.0).round() as u8;
    (0..img.height * img.width)
        .map(|i| {
            let px = &img.data[i * img.channels..(i + 1) * img.channels];
            if img.channels == 3 {
                [q(px[0]), q(px[1]), q(px[2])]
            } else {
                let g = q(px[0]);
                [g, g, g]
            }
        })
        .collect()
}

/// Nearest-neighbour enlargement by an integer factor (small test images stay legible).
fn enlarge(img: &Image, factor: usize) -> Image {
    if factor <= 1 {
        return img.clone();
    }
    let (h, w, c) = (img.height * factor, img.width * factor, img.channels);
    let mut data = Vec::with_capacity(h * w * c);
    for r in 0..h {
        for col in 0..w {
            let at = ((r / factor) * img.width + col / factor) * c;
            data.extend_from_slice(&img.data[at..at + c]);
        }
    }
    Image { height: h, width: w, channels: c, data }
}

/// One row per sample: observation | reconstruction | truth, all shown on the truth's value range
/// (images narrower than 160 pixels are enlarged).
pub fn samples(path: &Path, rows: &[(&Image, &Image, &Image)], caption: &str) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let narrowest = rows.iter().flat_map(|r| [r.0.width, r.1.width, r.2.width]).min().unwrap_or(1).max(1);
    let factor = 160usize.div_ceil(narrowest);
    let big: Vec<(Image, Image, Image)> =
        rows.iter().map(|r| (enlarge(r.0, factor), enlarge(r.1, factor), enlarge(r.2, factor))).collect();
    let rows: Vec<(&Image, &Image, &Image)> = big.iter().map(|(a, b, c)| (a, b, c)).collect();
    let rows = rows.as_slice();
    register_font();
    const GAP: usize = 4;
    const HEADER: usize = 24;
    let widths: Vec<usize> =
        (0..3).map(|k| rows.iter().map(|r| [r.0, r.1, r.2][k].width).max().unwrap_or(1)).collect();
    let width = (widths.iter().sum::<usize>() + 4 * GAP).max(360);
    let height =
        HEADER + rows.iter().map(|r| r.0.height.max(r.1.height).max(r.2.height) + GAP).sum::<usize>();
    let mut buf = vec![255u8; width * height * 3];
    let mut y0 = HEADER;
    for (obs, rec, truth) in rows {
        let (lo, hi) = bounds(truth.data.iter().map(|&v| v as f64)).unwrap_or((0.0, 1.0));
        let (lo, hi) = if lo >= 0.0 && hi <= 1.0 { (0.0, 1.0) } else { (lo, hi) };
        let mut x0 = GAP;
        for (k, img) in [*obs, *rec, *truth].into_iter().enumerate() {
            let px = display(img, lo, hi);
            for r in 0..img.height {
                for c in 0..img.width {
                    let at = ((y0 + r) * width + x0 + c) * 3;
                    buf[at..at + 3].copy_from_slice(&px[r * img.width + c]);
                }
            }
            x0 += widths[k] + GAP;
        }
        y0 += obs.height.max(rec.height).max(truth.height) + GAP;
    }
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width as u32, height as u32)).into_drawing_area();
        let style = (FAMILY, 14).into_font().color(&BLACK);
        let labels = ["observation", caption, "truth"];
        let mut x = GAP as i32;
        for (k, label) in labels.iter().enumerate() {
            root.draw(&Text::new(label.to_string(), (x, 4), style.clone()))
                .map_err(|e| anyhow!("drawing the samples: {e}"))?;
            x += (widths[k] + GAP) as i32;
        }
        root.present().map_err(|e| anyhow!("drawing the samples: {e}"))?;
    }
    save_rgb(path, width as u32, height as u32, buf)
}
