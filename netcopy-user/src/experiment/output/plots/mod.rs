//! SVG plots of a run, drawn with plotters' SVG backend from the `Analysis`.
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
//!
//! `chart` draws (a line chart over a log2 x axis, the "unavailable" SVG); `lines` holds
//! the line plots over message size and thread count, `copies` the stacked bars of copies
//! per message.

use anyhow::Result;

use crate::{experiment::analysis::Analysis, workload::modes::Mode};

mod chart;
mod copies;
mod lines;
mod receive;

pub(super) const THROUGHPUT_VS_SIZE: &str = "throughput_vs_size.svg";
pub(super) const LATENCY_VS_THREADS: &str = "latency_vs_threads.svg";
pub(super) const CPU_PER_BYTE_VS_SIZE: &str = "cpu_per_byte_vs_size.svg";
pub(super) const CACHE_MISSES_VS_SIZE: &str = "cache_misses_vs_size.svg";
pub(super) const COPIES_PER_MESSAGE: &str = "copies_per_message.svg";
pub(super) const RECEIVE_COST_VS_SIZE: &str = "receive_cost_vs_size.svg";

/// One rendered plot.
#[derive(Clone, Debug)]
pub(super) struct Plot {
    pub(super) file_name: &'static str,
    pub(super) svg: String,
}

/// `#D62728`: a mode's colour as the SVG backend writes it, the `stroke` of its series.
pub fn mode_color_hex(mode: Mode) -> String {
    mode.spec().colour_hex()
}

/// Renders the six plots. A plot whose data is missing states so in its SVG.
pub(super) fn render_all(a: &Analysis) -> Result<Vec<Plot>> {
    Ok(vec![
        Plot {
            file_name: THROUGHPUT_VS_SIZE,
            svg: lines::throughput_vs_size(a)?,
        },
        Plot {
            file_name: LATENCY_VS_THREADS,
            svg: lines::latency_vs_threads(a)?,
        },
        Plot {
            file_name: CPU_PER_BYTE_VS_SIZE,
            svg: lines::cpu_per_byte_vs_size(a)?,
        },
        Plot {
            file_name: CACHE_MISSES_VS_SIZE,
            svg: lines::cache_misses_vs_size(a)?,
        },
        Plot {
            file_name: COPIES_PER_MESSAGE,
            svg: copies::copies_per_message(a)?,
        },
        Plot {
            file_name: RECEIVE_COST_VS_SIZE,
            svg: receive::receive_cost_vs_size(a)?,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_are_distinct() {
        let c: Vec<String> = Mode::ALL.iter().map(|m| mode_color_hex(*m)).collect();
        assert_eq!(c[0], "#D62728");
        assert!(c[0] != c[1] && c[1] != c[2] && c[0] != c[2]);
    }
}
