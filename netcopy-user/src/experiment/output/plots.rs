//! SVG plots of a run, drawn with plotters' SVG backend from an [`Analysis`].
//!
//! Text: plotters is built without a font feature, so its "naive" layout estimates label
//! widths and the SVG backend writes plain `<text>` elements (font-family `sans-serif`); the
//! viewer supplies the glyphs. No font file is needed to build or run, and the plots render
//! on a machine with no fonts installed.
//!
//! Every figure that was not measured is said to be unavailable, with the reason, in the
//! plot itself: a missing counter is never drawn as zero.
//!
//! How to find a series in the SVG: each line series is one `<polyline>` whose `stroke` is
//! the mode's colour ([`mode_color_hex`]), plus one short `<polyline>` in the legend next to
//! a `<text>` holding the series label.

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::{
    experiment::analysis::{num, Analysis, Group, ModeCopies, Stat},
    ledger::{self, FigureSource},
    util::units::format_size,
    workload::modes::Mode,
};

pub const THROUGHPUT_VS_SIZE: &str = "throughput_vs_size.svg";
pub const LATENCY_VS_THREADS: &str = "latency_vs_threads.svg";
pub const CPU_PER_BYTE_VS_SIZE: &str = "cpu_per_byte_vs_size.svg";
pub const CACHE_MISSES_VS_SIZE: &str = "cache_misses_vs_size.svg";
pub const COPIES_PER_MESSAGE: &str = "copies_per_message.svg";

const WIDTH: u32 = 960;
const HEIGHT: u32 = 620;

/// One rendered plot.
#[derive(Clone, Debug)]
pub struct Plot {
    pub file_name: &'static str,
    pub svg: String,
}

/// The colour of a mode in every plot.
pub fn mode_color(mode: Mode) -> RGBColor {
    match mode {
        Mode::TwoCopy => RGBColor(0xd6, 0x27, 0x28),
        Mode::OneCopy => RGBColor(0x1f, 0x77, 0xb4),
        Mode::ZeroCopy => RGBColor(0x2c, 0xa0, 0x2c),
    }
}

/// `#D62728`: the mode's colour as the SVG backend writes it.
pub fn mode_color_hex(mode: Mode) -> String {
    let RGBColor(r, g, b) = mode_color(mode);
    format!("#{r:02X}{g:02X}{b:02X}")
}

fn site_color(site: &str) -> RGBColor {
    match site {
        "user_copy" => RGBColor(0x94, 0x67, 0xbd),
        "kernel_send_copy" => RGBColor(0xff, 0x7f, 0x0e),
        "deferred_copy" => RGBColor(0xd6, 0x27, 0x28),
        "kernel_recv_copy" => RGBColor(0x17, 0xbe, 0xcf),
        _ => RGBColor(0x7f, 0x7f, 0x7f),
    }
}

/// Renders the five plots. A plot whose data is missing states so in its SVG.
pub fn render_all(a: &Analysis) -> Result<Vec<Plot>> {
    Ok(vec![
        Plot {
            file_name: THROUGHPUT_VS_SIZE,
            svg: throughput_vs_size(a)?,
        },
        Plot {
            file_name: LATENCY_VS_THREADS,
            svg: latency_vs_threads(a)?,
        },
        Plot {
            file_name: CPU_PER_BYTE_VS_SIZE,
            svg: cpu_per_byte_vs_size(a)?,
        },
        Plot {
            file_name: CACHE_MISSES_VS_SIZE,
            svg: cache_misses_vs_size(a)?,
        },
        Plot {
            file_name: COPIES_PER_MESSAGE,
            svg: copies_per_message(a)?,
        },
    ])
}

fn modes(a: &Analysis) -> Vec<Mode> {
    let mut m: Vec<Mode> = a.groups.iter().map(|g| g.mode).collect();
    m.sort();
    m.dedup();
    m
}

/// One point: x in data units, the median and the min..max range of the repeats.
#[derive(Clone, Copy, Debug)]
struct Pt {
    x: f64,
    y: Stat,
}

#[derive(Clone, Copy, Debug)]
enum Marker {
    Circle,
    Triangle,
}

struct Series {
    label: String,
    color: RGBColor,
    width: u32,
    marker: Marker,
    points: Vec<Pt>,
}

#[derive(Clone, Copy, Debug)]
enum XKind {
    /// Message sizes in bytes, log2 axis.
    Size,
    /// Thread counts, log2 axis.
    Threads,
}

struct LinePlot {
    title: String,
    x_desc: String,
    y_desc: String,
    x_kind: XKind,
    /// Log y when the data spans more than a factor of 10 (and is positive).
    auto_log_y: bool,
    series: Vec<Series>,
    /// Lines printed under the chart: what the points are, how they were obtained.
    notes: Vec<String>,
}

/// A linear f64 axis with ticks exactly at the given values (plotters' `WithKeyPoints`
/// over f64 has no default label formatter, so `configure_mesh` refuses it).
#[derive(Clone, Debug)]
struct Keyed {
    lo: f64,
    hi: f64,
    keys: Vec<f64>,
}

impl Keyed {
    fn new(lo: f64, hi: f64, keys: Vec<f64>) -> Keyed {
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
fn tick(v: f64) -> String {
    let t = num(v);
    if t.contains('.') && !t.contains('e') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    }
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
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

fn notes_lines(notes: &[String]) -> Vec<String> {
    notes.iter().flat_map(|n| wrap(n, 130)).collect()
}

fn draw_notes<DB: DrawingBackend>(
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

fn line_plot(p: &LinePlot) -> Result<String> {
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
        .flat_map(|q| [q.y.min, q.y.median, q.y.max])
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
            .map(|q| q.y.max)
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
            .filter(|q| q.y.max > q.y.min && ty(q.y.min).is_finite())
            .map(|q| {
                ErrorBar::new_vertical(
                    q.x.log2(),
                    ty(q.y.min),
                    ty(q.y.median),
                    ty(q.y.max),
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
pub fn unavailable_svg(title: &str, lines: &[String]) -> Result<String> {
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

fn size_series(a: &Analysis, f: &dyn Fn(&Group) -> Option<Stat>) -> Vec<Series> {
    let Some(t) = a.base_threads else {
        return Vec::new();
    };
    modes(a)
        .into_iter()
        .map(|m| Series {
            label: m.name().to_string(),
            color: mode_color(m),
            width: 2,
            marker: Marker::Circle,
            points: a
                .groups
                .iter()
                .filter(|g| g.mode == m && g.threads == t)
                .filter_map(|g| {
                    Some(Pt {
                        x: g.size as f64,
                        y: f(g)?,
                    })
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

fn repeats_note(a: &Analysis) -> String {
    let reps: Vec<usize> = a.groups.iter().map(|g| g.repeats).collect();
    let lo = reps.iter().min().copied().unwrap_or(0);
    let hi = reps.iter().max().copied().unwrap_or(0);
    let n = if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    };
    format!("Points: median of {n} repeats; bars: min-max of the repeats.")
}

pub fn throughput_vs_size(a: &Analysis) -> Result<String> {
    let t = a.base_threads.unwrap_or(1);
    line_plot(&LinePlot {
        title: format!("Throughput vs message size ({t} thread(s))"),
        x_desc: "message size (bytes, log2 scale)".to_string(),
        y_desc: "throughput (Gbit/s)".to_string(),
        x_kind: XKind::Size,
        auto_log_y: false,
        series: size_series(a, &|g| g.throughput_gbps),
        notes: vec![
            repeats_note(a),
            "Observed by the client: verified payload bits of the stream phase / its duration \
             (loopback TCP)."
                .to_string(),
        ],
    })
}

pub fn cpu_per_byte_vs_size(a: &Analysis) -> Result<String> {
    let t = a.base_threads.unwrap_or(1);
    let cpu = a.cpu_metric;
    let mut notes = vec![
        repeats_note(a),
        format!(
            "{}: CPU time of the stream phase / payload bytes delivered (source per cell in \
             results.csv); lower is better.",
            cpu.label()
        ),
    ];
    if a.hw.cycles_cells == 0 {
        notes.push(format!(
            "Cycles per byte: unavailable in every cell ({}), so CPU time is shown instead.",
            a.hw.reason_text()
        ));
    }
    line_plot(&LinePlot {
        title: format!("CPU per byte vs message size ({t} thread(s))"),
        x_desc: "message size (bytes, log2 scale)".to_string(),
        y_desc: "CPU ns per payload byte".to_string(),
        x_kind: XKind::Size,
        auto_log_y: true,
        series: size_series(a, &|g| cpu.of(g)),
        notes,
    })
}

pub fn cache_misses_vs_size(a: &Analysis) -> Result<String> {
    let title = "LLC cache misses vs message size";
    if a.hw.cache_cells == 0 {
        return unavailable_svg(
            &format!("{title}: unavailable"),
            &[
                format!(
                    "The hardware cache-miss counter was unavailable in all {} cells of this run, \
                     so there is nothing to plot.",
                    a.hw.cells
                ),
                format!("Why: {}", a.hw.reason_text()),
                "No value is drawn: a counter that could not be read is unavailable, not zero."
                    .to_string(),
            ],
        );
    }
    let t = a.base_threads.unwrap_or(1);
    let mut notes = vec![
        repeats_note(a),
        "Server process LLC load misses (else cache misses) per MiB of payload, from \
         perf_event_open hardware counters (scaled when multiplexed)."
            .to_string(),
    ];
    if a.hw.cache_cells < a.hw.cells {
        notes.push(format!(
            "Unavailable in {} of {} cells ({}); those cells are left out, not drawn as zero.",
            a.hw.cells - a.hw.cache_cells,
            a.hw.cells,
            a.hw.reason_text()
        ));
    }
    line_plot(&LinePlot {
        title: format!("{title} ({t} thread(s))"),
        x_desc: "message size (bytes, log2 scale)".to_string(),
        y_desc: "LLC misses per MiB delivered".to_string(),
        x_kind: XKind::Size,
        auto_log_y: true,
        series: size_series(a, &|g| g.llc_misses_per_mib),
        notes,
    })
}

pub fn latency_vs_threads(a: &Analysis) -> Result<String> {
    let Some(size) = a.reference_size else {
        return unavailable_svg(
            "Latency vs threads: unavailable",
            &["No cell was measured.".to_string()],
        );
    };
    let mut series = Vec::new();
    for m in modes(a) {
        let groups: Vec<&Group> = a
            .groups
            .iter()
            .filter(|g| g.mode == m && g.size == size)
            .collect();
        for (label, f, marker, width) in [
            (
                "p50",
                (|g: &Group| g.latency_p50_us) as fn(&Group) -> Option<Stat>,
                Marker::Circle,
                2,
            ),
            ("p99", |g: &Group| g.latency_p99_us, Marker::Triangle, 1),
        ] {
            let points: Vec<Pt> = groups
                .iter()
                .filter_map(|g| {
                    Some(Pt {
                        x: g.threads as f64,
                        y: f(g)?,
                    })
                })
                .collect();
            if !points.is_empty() {
                series.push(Series {
                    label: format!("{} {label}", m.name()),
                    color: mode_color(m),
                    width,
                    marker,
                    points,
                });
            }
        }
    }
    if series.is_empty() {
        return unavailable_svg(
            &format!("Latency vs threads at {}: unavailable", format_size(size)),
            &["No cell at this size has request/response latency samples.".to_string()],
        );
    }
    let mut notes = vec![
        repeats_note(a),
        "Observed by the client: round-trip time of one request and its message (rr phase), \
         per thread; p50 circles and thick lines, p99 triangles and thin lines."
            .to_string(),
    ];
    if size != crate::experiment::analysis::REFERENCE_SIZE {
        notes.push(format!(
            "256K was not measured; {} is the nearest measured size.",
            format_size(size)
        ));
    }
    line_plot(&LinePlot {
        title: format!("Latency vs client threads ({} messages)", format_size(size)),
        x_desc: "client threads (log2 scale)".to_string(),
        y_desc: "latency (us)".to_string(),
        x_kind: XKind::Threads,
        auto_log_y: true,
        series,
        notes,
    })
}

fn unit_for(max_bytes: f64) -> (f64, &'static str) {
    if max_bytes >= (1u64 << 20) as f64 {
        ((1u64 << 20) as f64, "MiB")
    } else if max_bytes >= 1024.0 {
        (1024.0, "KiB")
    } else {
        (1.0, "B")
    }
}

/// Copy sites stacked in a bar (attach and completions are not copies).
fn stacked_sites(c: &ModeCopies) -> Vec<(&str, Option<f64>, FigureSource)> {
    c.sites
        .iter()
        .filter(|s| {
            ledger::SITES
                .iter()
                .find(|l| l.name() == s.site)
                .is_some_and(|l| l.is_copy())
        })
        .map(|s| {
            (
                s.site.as_str(),
                s.bytes_per_message.map(|b| b.median),
                s.source,
            )
        })
        .collect()
}

pub fn copies_per_message(a: &Analysis) -> Result<String> {
    let title = "Bytes copied per message, by copy site";
    if a.copies.is_empty() {
        return unavailable_svg(
            &format!("{title}: unavailable"),
            &["Neither the sweep nor the verification recorded copy sites.".to_string()],
        );
    }
    let copies = &a.copies;
    let totals: Vec<f64> = copies
        .iter()
        .map(|c| stacked_sites(c).iter().filter_map(|s| s.1).sum())
        .collect();
    let max_size = copies.iter().map(|c| c.size).max().unwrap_or(0) as f64;
    let ymax_bytes = totals.iter().copied().fold(max_size, f64::max).max(1.0);
    let (unit, unit_name) = unit_for(ymax_bytes);
    let ytop = ymax_bytes / unit * 1.3;
    let n = copies.len();
    let sizes: Vec<String> = {
        let mut s: Vec<u64> = copies.iter().map(|c| c.size).collect();
        s.sort();
        s.dedup();
        s.into_iter().map(format_size).collect()
    };
    let from_verification = copies.iter().any(|c| c.from == "verification");
    let mut notes = vec![format!(
        "Median bytes per delivered message (payload plus the 16-byte message header) at each \
         copy site, {} message(s), {} thread(s), stream phase. The dashed line is one copy of \
         the message.",
        sizes.join("/"),
        a.base_threads.unwrap_or(1)
    )];
    notes.push(
        "Source letters above each bar: O observed at the copy, I inferred from the kernel's \
         inputs, R reported by the kernel (completion flags), - not observable. zerocopy_attach \
         (pages pinned, not copied) is not stacked."
            .to_string(),
    );
    if from_verification {
        notes.push(
            "Modes marked (verification) had no copy figures in the sweep: their bar is the \
             verification run's observed bytes / messages."
                .to_string(),
        );
    }
    let notes = notes_lines(&notes);
    let notes_h = 14 + 17 * notes.len() as u32;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (upper, lower) = root.split_vertically(HEIGHT.saturating_sub(notes_h).max(200));
        let labels: Vec<String> = copies
            .iter()
            .map(|c| {
                if c.from == "verification" {
                    format!("{} (verification)", c.mode)
                } else {
                    c.mode.name().to_string()
                }
            })
            .collect();
        let x_fmt = |x: &f64| {
            let i = x.round();
            if i >= 0.0 && (i as usize) < labels.len() && (x - i).abs() < 1e-6 {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        };
        let mut chart = ChartBuilder::on(&upper)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(
                // One empty slot on the right holds the legend.
                Keyed::new(-0.6, n as f64 + 0.8, (0..n).map(|i| i as f64).collect()),
                0.0..ytop,
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("mode")
            .y_desc(format!("bytes copied per message ({unit_name})"))
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|y| tick(*y))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;

        let site_order: Vec<String> = {
            let mut v: Vec<String> = Vec::new();
            for c in copies {
                for (s, _, _) in stacked_sites(c) {
                    if !v.iter().any(|x| x == s) {
                        v.push(s.to_string());
                    }
                }
            }
            v
        };
        for site in &site_order {
            let color = site_color(site);
            let mut rects = Vec::new();
            for (i, c) in copies.iter().enumerate() {
                let stack = stacked_sites(c);
                let mut base = 0.0;
                for (s, v, _) in &stack {
                    let v = v.unwrap_or(0.0) / unit;
                    if *s == site.as_str() {
                        if v > 0.0 {
                            let x = i as f64;
                            rects.push(Rectangle::new(
                                [(x - 0.3, base), (x + 0.3, base + v)],
                                color.filled(),
                            ));
                        }
                        break;
                    }
                    base += v;
                }
            }
            chart
                .draw_series(rects)
                .map_err(err)?
                .label(site.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
        }
        // One copy of the message, per size (all bars share one size in a sweep).
        for c in copies.iter().take(1) {
            let y = (c.size + crate::workload::protocol::MESSAGE_HEADER_LEN as u64) as f64 / unit;
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(-0.6, y), (n as f64 - 0.4, y)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(err)?;
        }
        // Totals above the bars, sources and unobservable sites under them.
        for (i, c) in copies.iter().enumerate() {
            let stack = stacked_sites(c);
            let total: f64 = stack.iter().filter_map(|s| s.1).sum();
            let x = i as f64;
            let copies_of = if c.size > 0 {
                total / (c.size + crate::workload::protocol::MESSAGE_HEADER_LEN as u64) as f64
            } else {
                0.0
            };
            // With a site not observable the total is a lower bound.
            let at_least = if stack.iter().any(|s| s.1.is_none()) {
                "at least "
            } else {
                ""
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(
                        "{at_least}{} {unit_name} = {} copies",
                        num(total / unit),
                        num(copies_of)
                    ),
                    (x - 0.3, total / unit + ytop * 0.04),
                    ("sans-serif", 14).into_font(),
                )))
                .map_err(err)?;
            let letters: String = stack
                .iter()
                .map(|(s, v, src)| {
                    let l = match (v, src) {
                        (None, _) | (_, FigureSource::Unavailable) => "-",
                        (_, FigureSource::Observed) => "O",
                        (_, FigureSource::Inferred) => "I",
                        (_, FigureSource::Reported) => "R",
                    };
                    format!("{}:{l}", short_site(s))
                })
                .collect::<Vec<_>>()
                .join(" ");
            chart
                .draw_series(std::iter::once(Text::new(
                    letters,
                    (x - 0.3, total / unit + ytop * 0.09),
                    ("sans-serif", 12).into_font(),
                )))
                .map_err(err)?;
            let missing: Vec<&str> = stack
                .iter()
                .filter(|s| s.1.is_none())
                .map(|s| s.0)
                .collect();
            if !missing.is_empty() {
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("not observable: {}", missing.join(", ")),
                        (x - 0.3, total / unit + ytop * 0.14),
                        ("sans-serif", 12).into_font().color(&RED),
                    )))
                    .map_err(err)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .margin(30)
            .draw()
            .map_err(err)?;
        draw_notes(&lower, &notes)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn short_site(s: &str) -> &str {
    match s {
        "user_copy" => "user",
        "kernel_send_copy" => "send",
        "deferred_copy" => "deferred",
        "kernel_recv_copy" => "recv",
        other => other,
    }
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

    #[test]
    fn colors_are_distinct() {
        let c: Vec<String> = Mode::ALL.iter().map(|m| mode_color_hex(*m)).collect();
        assert_eq!(c[0], "#D62728");
        assert!(c[0] != c[1] && c[1] != c[2] && c[0] != c[2]);
    }
}
