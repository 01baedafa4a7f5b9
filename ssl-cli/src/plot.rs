//! Plots for run directories and analyses: every chart is written twice,
//! `STEM.svg` (vector, for papers) and `STEM.png` (for a quick look), with
//! the same drawing code.
//!
//! Text is laid out with DejaVu Sans embedded in the binary
//! (`assets/DejaVuSans.ttf`, Bitstream Vera / DejaVu licence in
//! `assets/DejaVuSans.LICENSE`), so plots look the same on every machine and
//! need no fontconfig. Files are written atomically (temp file + rename).

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use ssl_files::write_atomic as atomic_write;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The embedded file is a valid TrueType font; a failure here is a
        // build defect, reported on first use by plotters as a missing font.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Pixel size of the PNG (and the SVG's view box).
pub const SIZE: (u32, u32) = (900, 560);

/// The palette: colour-blind-safe (Okabe–Ito), in series order.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

/// The colour of series `i`.
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One named curve.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }
}

/// A line chart; `log_y` plots `log10(y)` with labels in powers of ten
/// (non-positive values are dropped from a log chart).
#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub log_y: bool,
    /// Draw markers on the points (for sparse curves such as evaluations).
    pub markers: bool,
}

impl LineChart {
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            log_y: false,
            markers: false,
        }
    }

    pub fn series(mut self, s: Series) -> Self {
        self.series.push(s);
        self
    }

    pub fn log_y(mut self, on: bool) -> Self {
        self.log_y = on;
        self
    }

    pub fn markers(mut self, on: bool) -> Self {
        self.markers = on;
        self
    }

    /// Write `stem.svg` and `stem.png`; returns both paths.
    pub fn write(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        let series: Vec<Series> = self
            .series
            .iter()
            .map(|s| Series {
                name: s.name.clone(),
                points: s
                    .points
                    .iter()
                    .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_y || *y > 0.0))
                    .map(|&(x, y)| (x, if self.log_y { y.log10() } else { y }))
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            bail!("plot {}: no finite points to draw", stem.display());
        }
        let bounds = Bounds::of(series.iter().flat_map(|s| s.points.iter().copied()));
        write_both(stem, &Figure::Lines(self, &series, bounds))
    }
}

/// Grouped bars: one group per category, one bar per named value set.
#[derive(Debug, Clone)]
pub struct BarChart {
    pub title: String,
    pub y_label: String,
    pub categories: Vec<String>,
    /// `(name, one value per category)`; NaN leaves a gap.
    pub groups: Vec<(String, Vec<f64>)>,
}

impl BarChart {
    /// Write `stem.svg` and `stem.png`; returns both paths.
    pub fn write(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        for (name, values) in &self.groups {
            if values.len() != self.categories.len() {
                bail!(
                    "plot {}: bar set `{name}` has {} values for {} categories",
                    stem.display(),
                    values.len(),
                    self.categories.len()
                );
            }
        }
        let max = self
            .groups
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        if self.categories.is_empty() || self.groups.is_empty() {
            bail!("plot {}: nothing to draw", stem.display());
        }
        write_both(stem, &Figure::Bars(self, max))
    }
}

#[derive(Debug, Clone, Copy)]
struct Bounds {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Bounds {
    fn of(points: impl Iterator<Item = (f64, f64)>) -> Self {
        let mut b = Bounds {
            x0: f64::INFINITY,
            x1: f64::NEG_INFINITY,
            y0: f64::INFINITY,
            y1: f64::NEG_INFINITY,
        };
        for (x, y) in points {
            b.x0 = b.x0.min(x);
            b.x1 = b.x1.max(x);
            b.y0 = b.y0.min(y);
            b.y1 = b.y1.max(y);
        }
        // Degenerate ranges (one point, a flat line) get a visible extent.
        if b.x1 - b.x0 <= f64::EPSILON * b.x0.abs().max(1.0) {
            b.x0 -= 0.5;
            b.x1 += 0.5;
        }
        let pad = (b.y1 - b.y0).abs() * 0.05;
        if pad <= f64::EPSILON * b.y0.abs().max(1.0) {
            b.y0 -= 0.5;
            b.y1 += 0.5;
        } else {
            b.y0 -= pad;
            b.y1 += pad;
        }
        b
    }
}

/// What to draw; rendered by the same code into both backends.
enum Figure<'a> {
    Lines(&'a LineChart, &'a [Series], Bounds),
    Bars(&'a BarChart, f64),
}

impl Figure<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        match *self {
            Figure::Lines(chart, series, bounds) => draw_lines(area, chart, series, bounds),
            Figure::Bars(chart, max) => draw_bars(area, chart, max),
        }
    }
}

/// Render the figure into the SVG and the PNG backends.
fn write_both(stem: &Path, figure: &Figure<'_>) -> Result<Vec<PathBuf>> {
    register_font();
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let svg_path = stem.with_extension("svg");
    let png_path = stem.with_extension("png");

    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        figure.draw(&area)?;
        area.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    atomic_write(&svg_path, svg.as_bytes())?;

    let mut pixels = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        figure.draw(&area)?;
        area.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image_rgb(&pixels, SIZE)
        .with_context(|| format!("encoding {}", png_path.display()))?;
    atomic_write(&png_path, &png)?;
    Ok(vec![svg_path, png_path])
}

trait PngWrite {
    fn write_image_rgb(self, pixels: &[u8], size: (u32, u32)) -> image::ImageResult<()>;
}

impl<W: std::io::Write> PngWrite for image::codecs::png::PngEncoder<W> {
    fn write_image_rgb(self, pixels: &[u8], size: (u32, u32)) -> image::ImageResult<()> {
        use image::ImageEncoder;
        self.write_image(pixels, size.0, size.1, image::ExtendedColorType::Rgb8)
    }
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing: {e}")
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &LineChart,
    series: &[Series],
    b: Bounds,
) -> Result<()> {
    area.fill(&WHITE).map_err(err)?;
    let log_y = chart.log_y;
    let mut ctx = ChartBuilder::on(area)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(b.x0..b.x1, b.y0..b.y1)
        .map_err(err)?;
    let y_fmt = move |v: &f64| {
        if log_y {
            log_label(*v)
        } else {
            short(*v)
        }
    };
    let x_fmt = |v: &f64| short(*v);
    ctx.configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let c = colour(i);
        ctx.draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        if chart.markers {
            ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(err)?;
        }
    }
    if series.len() > 1 || !series[0].name.is_empty() {
        draw_legend(&mut ctx)?;
    }
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &BarChart,
    max: f64,
) -> Result<()> {
    area.fill(&WHITE).map_err(err)?;
    let n_cat = chart.categories.len();
    let n_grp = chart.groups.len();
    let top = if max > 0.0 { max * 1.12 } else { 1.0 };
    let mut ctx = ChartBuilder::on(area)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n_cat as f64, 0.0..top)
        .map_err(err)?;
    let cats = chart.categories.clone();
    let x_fmt = move |v: &f64| {
        let i = (*v - 0.5).round();
        if (v - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < cats.len() {
            cats[i as usize].clone()
        } else {
            String::new()
        }
    };
    let y_fmt = |v: &f64| short(*v);
    ctx.configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * n_cat + 1)
        .x_label_formatter(&x_fmt)
        .y_desc(chart.y_label.as_str())
        .y_label_formatter(&y_fmt)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(err)?;
    let width = 0.8 / n_grp as f64;
    for (g, (name, values)) in chart.groups.iter().enumerate() {
        let c = colour(g);
        ctx.draw_series(
            values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, &v)| {
                    let x0 = i as f64 + 0.1 + g as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width * 0.92, v)], c.filled())
                }),
        )
        .map_err(err)?
        .label(name.as_str())
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
    }
    draw_legend(&mut ctx)?;
    Ok(())
}

/// The series legend, the same on every chart: upper right, on a light box.
fn draw_legend<'a, DB, CT>(ctx: &mut ChartContext<'a, DB, CT>) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: plotters::coord::CoordTranslate,
{
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// A log-axis label for `log10(y) = v`: two significant digits, so ticks
/// between powers of ten do not repeat ("2e-1", "2.5e-1", "1e0").
fn log_label(v: f64) -> String {
    let s = format!("{:.1e}", 10f64.powf(v));
    s.replacen(".0e", "e", 1)
}

/// Axis numbers without trailing noise: 0.25, 1.5k, 3e-4.
fn short(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 1e-2 {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.0e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_bar_charts_write_svg_and_png() {
        let dir = std::env::temp_dir().join(format!("ssl-plot-{}", std::process::id()));
        let chart = LineChart::new("loss", "step", "loss")
            .series(Series::new(
                "train",
                (0..50)
                    .map(|i| (i as f64, 1.0 / (1.0 + i as f64)))
                    .collect(),
            ))
            .series(Series::new("flat", vec![(0.0, 0.5), (49.0, 0.5)]))
            .log_y(true)
            .markers(true);
        let files = chart.write(&dir.join("loss")).unwrap();
        for f in &files {
            assert!(
                std::fs::metadata(f).unwrap().len() > 1000,
                "{} too small",
                f.display()
            );
        }
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("train"),
            "series label missing from SVG"
        );
        let png = std::fs::read(&files[1]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // The PNG has text and curves: not a blank white image.
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        let dark = img
            .pixels()
            .filter(|p| p.0.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 500, "PNG looks blank ({dark} dark pixels)");

        let bars = BarChart {
            title: "accuracy".into(),
            y_label: "%".into(),
            categories: vec!["encoder".into(), "embedding".into(), "whitened".into()],
            groups: vec![
                ("k-NN".into(), vec![80.0, 70.0, f64::NAN]),
                ("linear".into(), vec![85.0, 75.0, 40.0]),
            ],
        };
        let files = bars.write(&dir.join("bars")).unwrap();
        assert!(std::fs::metadata(&files[1]).unwrap().len() > 1000);
        let bad = BarChart {
            groups: vec![("x".into(), vec![1.0])],
            ..bars
        };
        assert!(bad
            .write(&dir.join("bad"))
            .unwrap_err()
            .to_string()
            .contains("3 categories"));
        assert!(LineChart::new("t", "x", "y")
            .series(Series::new("nan", vec![(0.0, f64::NAN)]))
            .write(&dir.join("empty"))
            .is_err());
        if std::env::var_os("SSL_KEEP_PLOTS").is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(2.0), "2");
        assert_eq!(short(15000.0), "15.0k");
        assert_eq!(short(0.0003), "3e-4");
        assert_eq!(log_label(0.0), "1e0");
        assert_eq!(log_label(0.25f64.log10()), "2.5e-1");
        assert_ne!(log_label(0.9f64.log10()), log_label(1.1f64.log10()));
    }
}
