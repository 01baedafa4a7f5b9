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
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
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
        let whole_x = series
            .iter()
            .flat_map(|s| &s.points)
            .all(|(x, _)| x.fract() == 0.0);
        let mut bounds = Bounds::of(
            series.iter().flat_map(|s| s.points.iter().copied()),
            if whole_x { 1.0 } else { 0.5 },
        );
        if self.markers {
            // Markers at the ends are drawn whole.
            let pad = 0.02 * (bounds.x1 - bounds.x0);
            bounds.x0 -= pad;
            bounds.x1 += pad;
        }
        write_both(stem, &Figure::Lines(self, &series, bounds, whole_x))
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
    /// The extent of `points`, `y` padded by 5%; a single `x` gets
    /// `x_pad` either side.
    fn of(points: impl Iterator<Item = (f64, f64)>, x_pad: f64) -> Self {
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
            b.x0 -= x_pad;
            b.x1 += x_pad;
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
    /// The chart, its finite series, their bounds, whether every `x` is whole.
    Lines(&'a LineChart, &'a [Series], Bounds, bool),
    Bars(&'a BarChart, f64),
}

impl Figure<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        match *self {
            Figure::Lines(chart, series, bounds, whole_x) => {
                draw_lines(area, chart, series, bounds, whole_x)
            }
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
    whole_x: bool,
) -> Result<()> {
    area.fill(&WHITE).map_err(err)?;
    let x_ticks = if whole_x {
        Ticks::whole(b.x0, b.x1)
    } else {
        Ticks::linear(b.x0, b.x1)
    };
    let y_ticks = if chart.log_y {
        Ticks::log(b.y0, b.y1)
    } else {
        Ticks::linear(b.y0, b.y1)
    };
    let mut ctx = ChartBuilder::on(area)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(
            Axis::new(b.x0, b.x1, x_ticks),
            Axis::new(b.y0, b.y1, y_ticks),
        )
        .map_err(err)?;
    ctx.configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(240, 240, 240))
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
        draw_legend(&mut ctx, legend_corner(series, b))?;
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
    let y_ticks = Ticks::linear(0.0, top);
    let categories = Ticks {
        major: (0..n_cat)
            .map(|i| (i as f64 + 0.5, chart.categories[i].clone()))
            .collect(),
        minor: Vec::new(),
    };
    let mut ctx = ChartBuilder::on(area)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(
            Axis::new(0.0, n_cat as f64, categories),
            Axis::new(0.0, top, y_ticks),
        )
        .map_err(err)?;
    ctx.configure_mesh()
        .disable_x_mesh()
        .y_desc(chart.y_label.as_str())
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
    draw_legend(&mut ctx, SeriesLabelPosition::UpperRight)?;
    Ok(())
}

/// The series legend, the same on every chart: in `corner`, on a light box.
fn draw_legend<'a, DB, CT>(
    ctx: &mut ChartContext<'a, DB, CT>,
    corner: SeriesLabelPosition,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: plotters::coord::CoordTranslate,
{
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 14))
        .position(corner)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// The corner of the plot where the legend hides the least of the curves:
/// the one whose legend-sized box the curves (sampled along each segment)
/// cross least; upper right on a tie.
fn legend_corner(series: &[Series], b: Bounds) -> SeriesLabelPosition {
    // The legend box as fractions of the plot area (about 800 x 440 pixels
    // inside the axes): 14 px text, 20 px per row, the line sample and margins.
    let longest = series
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    let w = ((longest as f64 * 8.0 + 60.0) / 800.0).min(0.6);
    let h = ((series.len() as f64 * 20.0 + 20.0) / 440.0).min(0.8);
    let (sx, sy) = (
        (b.x1 - b.x0).max(f64::MIN_POSITIVE),
        (b.y1 - b.y0).max(f64::MIN_POSITIVE),
    );
    let mut samples = Vec::new();
    for s in series {
        for pair in s.points.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            for k in 0..=16 {
                let t = f64::from(k) / 16.0;
                samples.push((
                    (x0 + t * (x1 - x0) - b.x0) / sx,
                    (y0 + t * (y1 - y0) - b.y0) / sy,
                ));
            }
        }
        samples.extend(
            s.points
                .iter()
                .map(|&(x, y)| ((x - b.x0) / sx, (y - b.y0) / sy)),
        );
    }
    // Where the box lies along an axis: at the low end, the middle, the high end.
    let within = |f: f64, size: f64, at: u8| match at {
        0 => f <= size,
        1 => (f - 0.5).abs() <= size / 2.0,
        _ => f >= 1.0 - size,
    };
    let hidden = |x_at: u8, y_at: u8| {
        samples
            .iter()
            .filter(|&&(fx, fy)| within(fx, w, x_at) && within(fy, h, y_at))
            .count()
    };
    use SeriesLabelPosition as P;
    // Corners first: the first of equally good places wins.
    [
        (P::UpperRight, 2, 2),
        (P::UpperLeft, 0, 2),
        (P::LowerRight, 2, 0),
        (P::LowerLeft, 0, 0),
        (P::MiddleRight, 2, 1),
        (P::MiddleLeft, 0, 1),
        (P::UpperMiddle, 1, 2),
        (P::LowerMiddle, 1, 0),
    ]
    .into_iter()
    .map(|(p, x_at, y_at)| (p, hidden(x_at, y_at)))
    .min_by_key(|(_, n)| *n)
    .map_or(P::UpperRight, |(p, _)| p)
}

/// The ticks of one axis: labelled positions (in the chart's coordinates:
/// `log10(y)` on a log axis) and unlabelled grid lines between them.
#[derive(Debug, Clone, PartialEq)]
struct Ticks {
    major: Vec<(f64, String)>,
    minor: Vec<f64>,
}

/// Ticks aimed at per axis (a chart is 900 × 560 pixels).
const TICKS_AIMED: f64 = 6.0;

impl Ticks {
    /// Round values (1, 2, 2.5 or 5 × 10^k apart) over `lo..=hi`, all
    /// labelled with the decimals their spacing needs.
    fn linear(lo: f64, hi: f64) -> Self {
        Self::spaced(lo, hi, nice_step((hi - lo).abs(), TICKS_AIMED))
    }

    /// As [`Ticks::linear`] for whole numbers (epochs, steps): round steps
    /// of at least 1, never 2.5.
    fn whole(lo: f64, hi: f64) -> Self {
        let step = match nice_step((hi - lo).abs(), TICKS_AIMED) {
            s if s < 1.0 => 1.0,
            2.5 => 2.0,
            s => s,
        };
        let mut ticks = Self::spaced(lo, hi, step);
        if step == 1.0 {
            ticks.minor.clear(); // no grid line at half an epoch
        }
        ticks
    }

    /// The multiples of `step` within `lo..=hi` (`lo` alone when the range
    /// is empty), labelled with the decimals `step` needs.
    fn spaced(lo: f64, hi: f64, step: f64) -> Self {
        let values = if hi > lo {
            let k0 = (lo / step - 1e-9).ceil() as i64;
            let k1 = (hi / step + 1e-9).floor() as i64;
            (k0..=k1).map(|k| k as f64 * step).collect()
        } else {
            vec![lo]
        };
        let digits = decimals(step);
        let minor = values
            .iter()
            .map(|v| v + step / 2.0)
            .filter(|&v| v <= hi)
            .collect();
        Ticks {
            major: values
                .iter()
                .map(|&v| (v, number(snap(v, step), Some(digits))))
                .collect(),
            minor,
        }
    }

    /// Ticks of a log axis spanning `10^lo ..= 10^hi`: powers of ten when
    /// there are enough of them, else 1-2-5 or 1-2-3-5-7 series, else
    /// round values as on a linear axis (a range within a factor of
    /// about 3, such as a loss going from 1.6 to 1.2).
    fn log(lo: f64, hi: f64) -> Self {
        let (min, max) = (10f64.powf(lo), 10f64.powf(hi));
        let in_range = |v: f64| {
            let p = v.log10();
            p >= lo - 1e-9 && p <= hi + 1e-9
        };
        let series = |mantissas: &[f64]| -> Vec<f64> {
            let (e0, e1) = (lo.floor() as i32, hi.ceil() as i32);
            (e0..=e1)
                .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
                .filter(|&v| in_range(v))
                .collect()
        };
        let labelled = |values: Vec<f64>, minor: Vec<f64>| Ticks {
            major: values
                .iter()
                .map(|&v| (v.log10(), number(v, None)))
                .collect(),
            minor: minor.into_iter().map(f64::log10).collect(),
        };
        let decades = series(&[1.0]);
        if decades.len() >= 4 {
            let every = decades.len().div_ceil(12);
            let kept: Vec<f64> = decades
                .iter()
                .copied()
                .filter(|v| (v.log10().round() as i64).rem_euclid(every as i64) == 0)
                .collect();
            let minor = if every == 1 {
                series(&[2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
            } else {
                decades
            };
            return labelled(kept, minor);
        }
        for mantissas in [&[1.0, 2.0, 5.0][..], &[1.0, 2.0, 3.0, 5.0, 7.0]] {
            let values = series(mantissas);
            if values.len() >= 4 {
                return labelled(values, Vec::new());
            }
        }
        // The top of a log axis is compressed: more ticks keep the bottom labelled.
        let lin = Ticks::spaced(min, max, nice_step(max - min, TICKS_AIMED + 1.0));
        Ticks {
            major: lin
                .major
                .into_iter()
                .filter(|(v, _)| *v > 0.0)
                .map(|(v, l)| (v.log10(), l))
                .collect(),
            minor: lin
                .minor
                .into_iter()
                .filter(|v| *v > 0.0)
                .map(f64::log10)
                .collect(),
        }
    }

    fn positions(&self) -> Vec<f64> {
        self.major.iter().map(|(p, _)| *p).collect()
    }

    /// The label of the tick at `position` (the nearest one).
    fn label(&self, position: f64) -> String {
        self.major
            .iter()
            .min_by(|a, b| (a.0 - position).abs().total_cmp(&(b.0 - position).abs()))
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }
}

/// A linear coordinate over `lo..hi` whose grid lines and labels are its
/// [`Ticks`] (plotters' own choice of ticks does not know which labels
/// its formatter will write, so it repeats them).
#[derive(Debug, Clone)]
struct Axis {
    range: std::ops::Range<f64>,
    ticks: Ticks,
}

impl Axis {
    fn new(lo: f64, hi: f64, ticks: Ticks) -> Self {
        Self {
            range: lo..hi,
            ticks,
        }
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.range.clone()).map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.ticks.minor.clone()
        } else {
            self.ticks.positions()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, value: &f64) -> String {
        self.ticks.label(*value)
    }
}

/// A round spacing (1, 2, 2.5 or 5 × 10^k) giving about `aimed` ticks over `span`.
fn nice_step(span: f64, aimed: f64) -> f64 {
    if !(span > 0.0 && span.is_finite()) {
        return 1.0;
    }
    let raw = span / aimed;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

/// `v` with the float noise of `k × step` removed (0.30000000000000004 → 0.3).
fn snap(v: f64, step: f64) -> f64 {
    if v.abs() < step * 1e-9 {
        0.0
    } else {
        v
    }
}

/// The fewest decimals (up to 12) that write `v` exactly.
fn decimals(v: f64) -> usize {
    (0..=12)
        .find(|&d| {
            let s = v.abs() * 10f64.powi(d as i32);
            (s - s.round()).abs() <= 1e-6 * s.max(1.0)
        })
        .unwrap_or(12)
}

/// A tick label: plain for magnitudes from 1e-3 to below 1e4 (with
/// `digits` decimals, or as few as write the value), scientific outside
/// (`2.5e-4`, `1.2e5`).
pub fn number(v: f64, digits: Option<usize>) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return v.to_string();
    }
    if (1e-3..1e4).contains(&a) {
        let d = digits.unwrap_or_else(|| decimals(v));
        return format!("{v:.d$}");
    }
    let mut e = a.log10().floor() as i32;
    let mut m = v / 10f64.powi(e);
    if (m.abs() * 1e6).round() / 1e6 >= 10.0 {
        m /= 10.0;
        e += 1;
    }
    let digits = format!("{m:.6}");
    let mantissa = digits.trim_end_matches('0').trim_end_matches('.');
    format!("{mantissa}e{e}")
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

    fn labels(t: &Ticks) -> Vec<&str> {
        t.major.iter().map(|(_, l)| l.as_str()).collect()
    }

    #[test]
    fn numbers_are_plain_from_a_thousandth_to_ten_thousand() {
        for (v, want) in [
            (0.0, "0"),
            (0.02, "0.02"),
            (1.35, "1.35"),
            (0.001, "0.001"),
            (2.0, "2"),
            (9999.0, "9999"),
            (1e4, "1e4"),
            (12345.0, "1.2345e4"),
            (0.0003, "3e-4"),
            (-2.5e-4, "-2.5e-4"),
            (9.9999999e-5, "1e-4"),
        ] {
            assert_eq!(number(v, None), want, "{v}");
        }
        assert_eq!(number(1.5, Some(2)), "1.50");
    }

    #[test]
    fn ticks_of_the_demos_axes() {
        // The demo's loss, ~1.6 falling to ~1.2, on a log axis.
        let loss = Ticks::log(1.2f64.log10(), 1.62f64.log10());
        assert_eq!(labels(&loss), ["1.2", "1.3", "1.4", "1.5", "1.6"]);
        assert!((loss.major[1].0 - 1.3f64.log10()).abs() < 1e-12);
        // Accuracies in %.
        let acc = Ticks::linear(18.3, 46.1);
        assert_eq!(labels(&acc), ["20", "25", "30", "35", "40", "45"]);
        // A spectrum over nine decades: powers of ten, plain inside the range.
        let spectrum = Ticks::log(-8.2, 1.3);
        assert_eq!(
            labels(&spectrum),
            ["1e-8", "1e-7", "1e-6", "1e-5", "1e-4", "0.001", "0.01", "0.1", "1", "10"]
        );
        assert_eq!(spectrum.minor.len(), 3 + 9 * 8);
        // Less than a decade: a 1-2-3-5-7 series.
        assert_eq!(
            labels(&Ticks::log(0.15f64.log10(), 1.2f64.log10())),
            ["0.2", "0.3", "0.5", "0.7", "1"]
        );
        // Whole numbers (epochs): no fractional ticks.
        assert_eq!(labels(&Ticks::whole(7.0, 9.0)), ["7", "8", "9"]);
        assert_eq!(
            labels(&Ticks::whole(0.0, 12.0)),
            ["0", "2", "4", "6", "8", "10", "12"]
        );
        // Steps in the tens of thousands.
        assert_eq!(
            labels(&Ticks::linear(0.0, 25_000.0)),
            ["0", "5000", "1e4", "1.5e4", "2e4", "2.5e4"]
        );
    }

    /// Every axis, linear or log, at any scale: labels distinct, each the
    /// value at its position, plain from 1e-3 to 1e4.
    #[test]
    fn tick_labels_are_distinct_and_say_their_value() {
        let mut checked = 0;
        for scale in -7..=7 {
            for (a, b) in [
                (1.0, 1.3),
                (1.0, 2.0),
                (0.2, 9.0),
                (1.0, 1e3),
                (-3.0, 7.0),
                (1.17, 1.61),
            ] {
                let (lo, hi) = (a * 10f64.powi(scale), b * 10f64.powi(scale));
                let mut axes = vec![(Ticks::linear(lo, hi), false)];
                if lo > 0.0 {
                    axes.push((Ticks::log(lo.log10(), hi.log10()), true));
                }
                for (t, log) in axes {
                    let l = labels(&t);
                    assert!(l.len() >= 3, "{lo}..{hi} (log {log}): {l:?}");
                    let mut unique = l.clone();
                    unique.sort_unstable();
                    unique.dedup();
                    assert_eq!(unique.len(), l.len(), "{lo}..{hi} (log {log}): {l:?}");
                    for (p, label) in &t.major {
                        let v = if log { 10f64.powf(*p) } else { *p };
                        let read: f64 = label.parse().unwrap();
                        assert!(
                            (read - v).abs() <= 1e-9 * v.abs().max(1e-300) + 1e-12 * (hi - lo),
                            "{label} at {v}"
                        );
                        let plain = (1e-3..1e4).contains(&v.abs()) || v == 0.0;
                        assert_eq!(!label.contains('e'), plain, "{label} at {v}");
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 100);
    }

    /// Tick labels of an SVG chart: the texts at the left of the plot
    /// (right-aligned at one x) and those under it (centred at one y), in
    /// drawing order.
    fn svg_axis_labels(svg: &str) -> (Vec<String>, Vec<String>) {
        let mut texts: Vec<(String, String, String)> = Vec::new();
        for chunk in svg.split("<text").skip(1) {
            let attr = |name: &str| {
                chunk
                    .split_once(&format!(" {name}=\""))
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(v, _)| v.to_string())
                    .unwrap_or_default()
            };
            let body = chunk
                .split_once('>')
                .and_then(|(_, rest)| rest.split_once("</text>"))
                .map(|(t, _)| t.trim().to_string())
                .unwrap_or_default();
            let anchor = attr("text-anchor");
            let key = if anchor == "end" {
                attr("x")
            } else {
                attr("y")
            };
            texts.push((anchor, key, body));
        }
        // The axis whose labels share a coordinate: the most frequent one.
        let pick = |end: bool| -> Vec<String> {
            let mut counts = std::collections::HashMap::new();
            for (a, k, _) in &texts {
                if (a == "end") == end {
                    *counts.entry(k.clone()).or_insert(0) += 1;
                }
            }
            let Some((key, _)) = counts.into_iter().max_by_key(|(_, n)| *n) else {
                return Vec::new();
            };
            texts
                .iter()
                .filter(|(a, k, _)| (a == "end") == end && *k == key)
                .map(|(_, _, t)| t.clone())
                .collect()
        };
        (pick(true), pick(false))
    }

    /// The demo's plots (`ssl demo`: 8 epochs, the loss logged every 10
    /// steps falling from ~1.6 to ~1.2 on a log axis, one evaluation in %,
    /// the spectrum over many decades), drawn as a run draws them: every
    /// axis label distinct and plain between 1e-3 and 1e4.
    #[test]
    fn the_demos_plots_have_distinct_plain_labels() {
        use ssl_train::records::save_spectrum;
        use ssl_train::{Record, Spectrum};
        let keep = std::env::var_os("SSL_KEEP_PLOTS").map(std::path::PathBuf::from);
        let scratch = test_support::scratch_dir();
        let run = keep.clone().unwrap_or_else(|| scratch.path().to_path_buf());
        std::fs::create_dir_all(&run).unwrap();
        let mut lines = String::new();
        let mut push = |r: Record| {
            lines.push_str(&serde_json::to_string(&r).unwrap());
            lines.push('\n');
        };
        for step in (10..=312).step_by(10) {
            let t = step as f64 / 312.0;
            let wiggle = 0.03 * ((step as f64) * 0.7).sin();
            push(Record::Step {
                epoch: step / 39,
                step,
                loss: 1.6 - 0.4 * t.sqrt() + wiggle,
                lr: 3e-3,
                images_per_s: 150.0,
            });
        }
        push(Record::Eval {
            epoch: 8,
            step: 312,
            knn_top1: 0.876,
            linear_top1: Some(0.958),
            linear_top5: Some(1.0),
            normalised_stable_rank: 0.4,
        });
        std::fs::write(run.join("metrics.jsonl"), &lines).unwrap();
        let singular: Vec<f64> = (0..128).map(|i| 30.0 * 0.9f64.powi(i)).collect();
        save_spectrum(
            &run,
            &Spectrum {
                epoch: 8,
                representation: "encoder".into(),
                covariance_eigenvalues: singular.iter().map(|s| s * s / 5000.0).collect(),
                singular_values: singular,
            },
        )
        .unwrap();
        crate::report::write_plots(&run).unwrap();

        let plain = |l: &str| l.parse::<f64>().is_ok() && !l.contains('e');
        for (stem, y_min) in [("loss", 4), ("accuracy", 4), ("spectrum", 6)] {
            let svg = std::fs::read_to_string(run.join(format!("plots/{stem}.svg"))).unwrap();
            let (y, x) = svg_axis_labels(&svg);
            for (axis, labels, least) in [("y", &y, y_min), ("x", &x, 3)] {
                assert!(labels.len() >= least, "{stem} {axis}: {labels:?}");
                let mut unique = labels.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(unique.len(), labels.len(), "{stem} {axis}: {labels:?}");
                for l in labels {
                    let v: f64 = l.parse().unwrap_or_else(|_| panic!("{stem} {axis}: {l}"));
                    if (1e-3..1e4).contains(&v.abs()) {
                        assert!(plain(l), "{stem} {axis}: {l} is not plain");
                    }
                }
            }
            if stem == "loss" {
                assert_eq!(y, ["1.2", "1.3", "1.4", "1.5"], "{stem}");
            }
            if stem == "spectrum" {
                assert!(
                    ["100", "1", "0.01", "1e-4", "1e-12"]
                        .iter()
                        .all(|l| y.contains(&l.to_string())),
                    "{y:?}"
                );
            }
            if stem == "accuracy" {
                assert_eq!(x, ["7", "8", "9"], "whole epochs: {x:?}");
            }
        }
    }
}
