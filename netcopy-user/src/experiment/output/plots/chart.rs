//! The drawing every plot shares: a line chart of medians with bars for their intervals
//! over a log2 x axis, the SVG that says a figure is unavailable, axis ticks and wrapped
//! notes.

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::{
    experiment::analysis::{groups::Stat, num},
    util::units::format_size,
    workload::modes::Mode,
};

/// Every plot's size in pixels (the unavailable SVG is shorter).
pub(super) const WIDTH: u32 = 960;
pub(super) const HEIGHT: u32 = 620;

/// The colour of a mode in every plot: its row of the mode table.
pub(super) fn mode_color(mode: Mode) -> RGBColor {
    let (r, g, b) = mode.spec().colour;
    RGBColor(r, g, b)
}

/// One point: x in data units, the median and the interval of the repeats.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pt {
    pub(super) x: f64,
    pub(super) y: Stat,
}

impl Pt {
    /// The bar's ends: the median's interval, or the median alone without one.
    fn bar(&self) -> (f64, f64) {
        self.y
            .interval
            .map_or((self.y.median, self.y.median), |i| (i.low, i.high))
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Marker {
    Circle,
    Triangle,
}

pub(super) struct Series {
    pub(super) label: String,
    pub(super) color: RGBColor,
    pub(super) width: u32,
    pub(super) marker: Marker,
    pub(super) points: Vec<Pt>,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum XKind {
    /// Message sizes in bytes, log2 axis.
    Size,
    /// Thread counts, log2 axis.
    Threads,
}

pub(super) struct LinePlot {
    pub(super) title: String,
    pub(super) x_desc: String,
    pub(super) y_desc: String,
    pub(super) x_kind: XKind,
    /// Log y when the data spans more than a factor of 10 (and is positive).
    pub(super) auto_log_y: bool,
    pub(super) series: Vec<Series>,
    /// Lines printed under the chart: what the points are, how they were obtained.
    pub(super) notes: Vec<String>,
}

/// A linear f64 axis with ticks exactly at the given values (plotters' `WithKeyPoints`
/// over f64 has no default label formatter, so `configure_mesh` refuses it).
#[derive(Clone, Debug)]
pub(super) struct Keyed {
    lo: f64,
    hi: f64,
    keys: Vec<f64>,
}

impl Keyed {
    pub(super) fn new(lo: f64, hi: f64, keys: Vec<f64>) -> Keyed {
        // A degenerate range would map everything to one pixel (or divide by zero).
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            (lo - 1.0, lo + 1.0)
        };
        Keyed { lo, hi, keys }
    }
}

impl plotters::coord::ranged1d::Ranged for Keyed {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = (value - self.lo) / (self.hi - self.lo);
        let t = if t.is_finite() {
            t.clamp(-10.0, 10.0)
        } else {
            0.0
        };
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.keys.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// An axis label: up to three significant digits, no trailing zeros (`5`, `2.5`, `0.02`).
pub(super) fn tick(v: f64) -> String {
    let t = num(v);
    if t.contains('.') && !t.contains('e') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    }
}

pub(super) fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e:?}")
}

/// Splits text into lines of at most `width` characters at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

pub(super) fn notes_lines(notes: &[String]) -> Vec<String> {
    notes.iter().flat_map(|n| wrap(n, 130)).collect()
}

pub(super) fn draw_notes<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    lines: &[String],
) -> Result<()> {
    let style = ("sans-serif", 13)
        .into_font()
        .color(&RGBColor(0x33, 0x33, 0x33));
    for (i, line) in lines.iter().enumerate() {
        area.draw(&Text::new(
            line.clone(),
            (20, 6 + 17 * i as i32),
            style.clone(),
        ))
        .map_err(err)?;
    }
    Ok(())
}

pub(super) fn line_plot(p: &LinePlot) -> Result<String> {
    let pts: Vec<&Pt> = p.series.iter().flat_map(|s| s.points.iter()).collect();
    if pts.is_empty() {
        return unavailable_svg(&p.title, &["No cell has this figure.".to_string()]);
    }
    let mut xs: Vec<f64> = pts.iter().map(|q| q.x).filter(|x| *x > 0.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    if xs.is_empty() {
        return unavailable_svg(&p.title, &["No point has a positive x value.".to_string()]);
    }
    let lx: Vec<f64> = xs.iter().map(|x| x.log2()).collect();
    let (x0, x1) = (lx[0] - 0.4, lx[lx.len() - 1] + 0.4);

    let ys: Vec<f64> = pts
        .iter()
        .flat_map(|q| [q.bar().0, q.y.median, q.bar().1])
        .filter(|y| y.is_finite())
        .collect();
    let ymin = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let ymax = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_y = p.auto_log_y && ymin > 0.0 && ymax / ymin > 10.0;
    let ty = |y: f64| if log_y { y.log10() } else { y };
    let (y0, y1, y_keys) = if log_y {
        let lo = ymin.log10().floor();
        // Headroom above the highest point so that it does not sit on the frame.
        let hi = (ymax.log10() + 0.08 * (ymax.log10() - lo).max(1.0)).max(lo + 1.0);
        let mut keys = Vec::new();
        let mut e = lo;
        while e <= hi.ceil() + 1e-9 {
            keys.push(e);
            if hi - lo <= 2.5 {
                keys.push(e + 2f64.log10());
                keys.push(e + 5f64.log10());
            }
            e += 1.0;
        }
        keys.retain(|k| *k <= hi + 1e-9);
        (lo, hi, Some(keys))
    } else {
        let top = if ymax > 0.0 { ymax * 1.12 } else { 1.0 };
        (ymin.min(0.0), top, None)
    };
    let y_desc = if log_y {
        format!("{} (log scale)", p.y_desc)
    } else {
        p.y_desc.clone()
    };

    // The legend goes into the upper corner where the curves are lower.
    let edge_max = |x: f64| {
        pts.iter()
            .filter(|q| q.x == x)
            .map(|q| q.bar().1)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let legend_pos = if edge_max(xs[0]) > edge_max(xs[xs.len() - 1]) {
        SeriesLabelPosition::UpperRight
    } else {
        SeriesLabelPosition::UpperLeft
    };

    let notes = notes_lines(&p.notes);
    let notes_h = 14 + 17 * notes.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (upper, lower) = root.split_vertically(HEIGHT.saturating_sub(notes_h).max(200));
        let x_kind = p.x_kind;
        let x_fmt = move |x: &f64| {
            let v = 2f64.powf(*x).round();
            match x_kind {
                XKind::Size => format_size(v as u64),
                XKind::Threads => format!("{v:.0}"),
            }
        };
        let y_fmt = move |y: &f64| {
            if log_y {
                tick(10f64.powf(*y))
            } else {
                tick(*y)
            }
        };
        let mut builder = ChartBuilder::on(&upper);
        builder
            .caption(&p.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80);
        let x_range = Keyed::new(x0, x1, lx.clone());
        match y_keys {
            Some(keys) => {
                let mut chart = builder
                    .build_cartesian_2d(x_range, Keyed::new(y0, y1, keys))
                    .map_err(err)?;
                chart
                    .configure_mesh()
                    .x_desc(&p.x_desc)
                    .y_desc(&y_desc)
                    .x_label_formatter(&x_fmt)
                    .y_label_formatter(&y_fmt)
                    .label_style(("sans-serif", 14))
                    .axis_desc_style(("sans-serif", 15))
                    .draw()
                    .map_err(err)?;
                draw_line_series(&mut chart, &p.series, &ty, legend_pos)?;
            }
            None => {
                let mut chart = builder.build_cartesian_2d(x_range, y0..y1).map_err(err)?;
                chart
                    .configure_mesh()
                    .x_desc(&p.x_desc)
                    .y_desc(&y_desc)
                    .x_label_formatter(&x_fmt)
                    .y_label_formatter(&y_fmt)
                    .label_style(("sans-serif", 14))
                    .axis_desc_style(("sans-serif", 15))
                    .draw()
                    .map_err(err)?;
                draw_line_series(&mut chart, &p.series, &ty, legend_pos)?;
            }
        }
        draw_notes(&lower, &notes)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn draw_line_series<'a, DB, XR, YR>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<XR, YR>>,
    series: &[Series],
    ty: &dyn Fn(f64) -> f64,
    legend_pos: SeriesLabelPosition,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    XR: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    YR: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    for s in series {
        let color = s.color;
        let width = s.width;
        let mut pts: Vec<Pt> = s
            .points
            .iter()
            .copied()
            .filter(|q| q.x > 0.0 && q.y.median.is_finite() && (ty(q.y.median)).is_finite())
            .collect();
        pts.sort_by(|a, b| a.x.total_cmp(&b.x));
        let line: Vec<(f64, f64)> = pts.iter().map(|q| (q.x.log2(), ty(q.y.median))).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(width)))
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(width))
            });
        match s.marker {
            Marker::Circle => {
                chart
                    .draw_series(
                        line.iter()
                            .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
                    )
                    .map_err(err)?;
            }
            Marker::Triangle => {
                chart
                    .draw_series(
                        line.iter()
                            .map(|&(x, y)| TriangleMarker::new((x, y), 6, color.filled())),
                    )
                    .map_err(err)?;
            }
        }
        let bars: Vec<_> = pts
            .iter()
            .filter(|q| q.bar().1 > q.bar().0 && ty(q.bar().0).is_finite())
            .map(|q| {
                ErrorBar::new_vertical(
                    q.x.log2(),
                    ty(q.bar().0),
                    ty(q.y.median),
                    ty(q.bar().1),
                    color.stroke_width(1),
                    8,
                )
            })
            .collect();
        chart.draw_series(bars).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(legend_pos)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// An SVG that states that a figure is unavailable and why (never an empty or zero plot).
pub(super) fn unavailable_svg(title: &str, lines: &[String]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        root.draw(&Text::new(
            title.to_string(),
            (24, 24),
            ("sans-serif", 22).into_font(),
        ))
        .map_err(err)?;
        let style = ("sans-serif", 15).into_font();
        let mut y = 70;
        for line in lines.iter().flat_map(|l| wrap(l, 110)) {
            root.draw(&Text::new(line, (24, y), style.clone()))
                .map_err(err)?;
            y += 22;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_words() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("", 4), Vec::<String>::new());
    }

    #[test]
    fn ticks_have_no_trailing_zeros() {
        assert_eq!(tick(5.0), "5");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(30.0), "30");
        assert_eq!(tick(0.020), "0.02");
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(100.0), "100");
    }
}
