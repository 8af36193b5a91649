//! Bytes copied per message, one stacked bar per mode with a segment per copy site, and
//! the source of each segment's figure.

use anyhow::Result;
use plotters::prelude::*;

use super::chart::{draw_notes, err, notes_lines, tick, unavailable_svg, Keyed, HEIGHT, WIDTH};
use crate::{
    experiment::analysis::{copies::ModeCopies, num, Analysis},
    ledger::FigureSource,
    util::units::format_size,
    workload::protocol::MESSAGE_HEADER_LEN,
};

fn site_color(site: &str) -> RGBColor {
    match site {
        "user_copy" => RGBColor(0x94, 0x67, 0xbd),
        "kernel_send_copy" => RGBColor(0xff, 0x7f, 0x0e),
        "deferred_copy" => RGBColor(0xd6, 0x27, 0x28),
        "kernel_recv_copy" => RGBColor(0x17, 0xbe, 0xcf),
        _ => RGBColor(0x7f, 0x7f, 0x7f),
    }
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
            crate::ledger::SITES
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

pub(super) fn copies_per_message(a: &Analysis) -> Result<String> {
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
            let y = (c.size + MESSAGE_HEADER_LEN as u64) as f64 / unit;
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
                total / (c.size + MESSAGE_HEADER_LEN as u64) as f64
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
