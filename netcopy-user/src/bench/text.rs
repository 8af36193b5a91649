//! The report as text, for a terminal: what `netcopy bench` prints without `--json`.

use super::{
    capacity,
    schema::{BenchReport, CapacitySection, Comparison, Instrument, Outcome, Part},
};
use crate::util::{stats::Summary, units::format_size};

fn summary_text(s: &Summary, unit: &str, digits: usize) -> String {
    format!(
        "{:.*} {unit} (min {:.*}, max {:.*})",
        digits, s.median, digits, s.min, digits, s.max
    )
}

/// The human-readable report.
pub(crate) fn render(r: &BenchReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "netcopy bench: {} rounds of {} s per side, alternating\nmachine: {}\nsource: {}\n",
        r.rounds,
        r.seconds,
        r.machine.describe(),
        r.machine.source.describe()
    ));

    out.push_str("\n1. against iperf3 (loopback 127.0.0.1, medians of the rounds)\n");
    match &r.peers {
        Outcome::Measured(p) => {
            if let Some(reason) = p.iperf3.why_not() {
                out.push_str(&format!("   iperf3: {reason}\n"));
            } else if let Outcome::Measured(i) = &p.iperf3 {
                out.push_str(&format!(
                    "   iperf3: {} ({})\n",
                    i.version,
                    i.path.display()
                ));
            }
            out.push_str(&comparisons(&p.comparisons));
        }
        other => out.push_str(&format!("   {}\n", other.why_not().unwrap_or_default())),
    }
    out.push_str(&load_line(r, Part::Peers));

    out.push_str("\n2. against bare send loops (same receiver, path and size)\n");
    match &r.bare {
        Outcome::Measured(b) => {
            out.push_str(&format!(
                "   {} messages, {} s per run, {}\n",
                format_size(b.size),
                b.seconds,
                b.pinned_cpu
                    .map_or("not pinned".into(), |c| format!("both sides on CPU {c}"))
            ));
            out.push_str(&comparisons(&b.comparisons));
        }
        other => out.push_str(&format!("   {}\n", other.why_not().unwrap_or_default())),
    }
    out.push_str(&load_line(r, Part::Bare));

    out.push_str("\n3. the ceiling\n");
    match &r.ceiling {
        Outcome::Measured(c) => {
            let m = &c.memcpy;
            out.push_str(&format!(
                "   memcpy, 1 thread, {} MiB buffers (LLC {}), {} passes: {}\n",
                m.buffer_bytes >> 20,
                m.llc_bytes
                    .map_or("unknown".to_string(), |l| format!("{} MiB", l >> 20)),
                m.passes,
                summary_text(&m.gbytes_per_s, "GB/s", 2)
            ));
            for note in &m.notes {
                out.push_str(&format!("   note: {note}\n"));
            }
            out.push_str(&format!(
                "   estimated loopback TCP ceiling (every byte copied twice by the kernel: \
                 memcpy / 2): {:.1} Gbit/s per stream, {:.1} Gbit/s for all {} CPUs\n",
                c.per_stream_gbps, c.machine_gbps, r.machine.cpus
            ));
            for (label, best) in [
                ("single stream", &c.best_single_stream),
                ("several streams", &c.best_multi_stream),
            ] {
                match best {
                    Some(b) => out.push_str(&format!(
                        "   our best, {label}: {} at {:.2} Gbit/s = {:.0}% of the ceiling\n",
                        b.what,
                        b.gbps,
                        b.fraction_of_ceiling * 100.0
                    )),
                    None => out.push_str(&format!(
                        "   our best, {label}: not measured (needs the peers part)\n"
                    )),
                }
            }
        }
        other => out.push_str(&format!("   {}\n", other.why_not().unwrap_or_default())),
    }
    out.push_str(&load_line(r, Part::Ceiling));

    out.push_str("\n4. probe overhead\n");
    match &r.overhead {
        Outcome::Measured(o) => {
            out.push_str(&format!(
                "   workload: {} {}, {} thread, {}; {} blocks of one {} ms window per \
                 instrument (after {} ms to settle), all on one running connection; overheads \
                 are medians of the blocks against the block's no-probe window; CPU = CPU \
                 time of the server and benchmark processes per payload byte\n",
                o.mode,
                format_size(o.size),
                o.threads,
                match (o.pinned_cpu, &o.pin_note) {
                    (Some(cpu), _) => format!("server and client pinned to CPU {cpu}"),
                    (None, note) => format!("not pinned ({})", note.as_deref().unwrap_or("?")),
                },
                o.blocks,
                o.window_ms,
                o.settle_ms,
            ));
            for v in &o.variants {
                match v {
                    Outcome::Measured(v) => {
                        out.push_str(&format!(
                            "   {:<19} {}",
                            v.instrument.label(),
                            summary_text(&v.gbps, "Gbit/s", 2)
                        ));
                        match &v.cpu_ns_per_byte {
                            Some(c) => {
                                out.push_str(&format!(", {}", summary_text(c, "CPU ns/byte", 4)))
                            }
                            None => out.push_str(&format!(
                                ", CPU unavailable ({})",
                                v.cpu_unavailable.as_deref().unwrap_or("?")
                            )),
                        }
                        out.push('\n');
                        if v.instrument != Instrument::None {
                            out.push_str(&format!(
                                "   {:<19} overhead: throughput {}, CPU per byte {}{}{}\n",
                                "",
                                v.throughput_loss.map_or("n/a".into(), |p| p.text()),
                                v.cpu_increase.map_or("n/a".into(), |p| p.text()),
                                v.setup_seconds.as_ref().map_or(String::new(), |s| format!(
                                    "; loading and attaching took {:.2} s",
                                    s.median
                                )),
                                v.switch_seconds.as_ref().map_or(String::new(), |s| format!(
                                    ", switching on {:.3} s (median; between windows)",
                                    s.median
                                ))
                            ));
                        }
                        for e in &v.evidence {
                            out.push_str(&format!("   {:<19} {e}\n", ""));
                        }
                        match &v.program_cost {
                            Some(Outcome::Measured(cost)) => {
                                out.push_str(&format!("   {:<19} {}\n", "", cost.summary()));
                                for p in &cost.programs {
                                    out.push_str(&format!(
                                        "   {:<19}   {:<34} {:<42} {:>5.2} runs/message {:>7.0} ns/run\n",
                                        "", p.program, p.hook, p.runs_per_message, p.ns_per_run
                                    ));
                                }
                                out.push_str(&format!("   {:<19}   {}\n", "", cost.floor_text()));
                            }
                            Some(other) => out.push_str(&format!(
                                "   {:<19} kernel's accounting: {}\n",
                                "",
                                other.why_not().unwrap_or_default()
                            )),
                            None => {}
                        }
                    }
                    other => out.push_str(&format!("   {}\n", other.why_not().unwrap_or_default())),
                }
            }
            if let Some(noise) = o.noise_sentence() {
                out.push_str(&format!("   noise: {noise}\n"));
            }
            out.push_str(&format!(
                "   CPU mitigations: {}\n",
                r.machine.mitigations_sentence()
            ));
        }
        other => out.push_str(&format!("   {}\n", other.why_not().unwrap_or_default())),
    }
    out.push_str(&load_line(r, Part::Probes));

    out.push_str("\n5. trace capacity\n");
    out.push_str(&render_capacity(&r.trace_capacity));
    out.push_str(&load_line(r, Part::Trace));

    out.push_str("\ntargets\n");
    for t in &r.targets {
        out.push_str(&format!(
            "   [{:<12}] {:<56} {}\n",
            t.verdict.word(),
            t.goal,
            t.measured
        ));
    }
    out.push_str(&format!("\nbench took {:.0} s\n", r.elapsed_seconds));
    out
}

/// Each comparison: ours, theirs, the ratio and the notes.
fn comparisons(list: &[Outcome<Comparison>]) -> String {
    let mut out = String::new();
    for c in list {
        match c {
            Outcome::Measured(c) => {
                out.push_str(&format!("   {}:\n", c.name));
                out.push_str(&format!(
                    "     ours    {:<52} {}\n",
                    c.ours_label,
                    summary_text(&c.ours_gbps, "Gbit/s", 2)
                ));
                match &c.theirs_gbps {
                    Outcome::Measured(t) => out.push_str(&format!(
                        "     theirs  {:<52} {}\n",
                        c.theirs_label,
                        summary_text(t, "Gbit/s", 2)
                    )),
                    other => out.push_str(&format!(
                        "     theirs  {:<52} {}\n",
                        c.theirs_label,
                        other.why_not().unwrap_or_default()
                    )),
                }
                if let Some(ratio) = c.ratio {
                    out.push_str(&format!("     ratio ours/theirs: {ratio:.3}\n"));
                }
                for note in &c.notes {
                    out.push_str(&format!("     note: {note}\n"));
                }
            }
            other => out.push_str(&format!("   {}\n", other.why_not().unwrap_or_default())),
        }
    }
    out
}

/// The load line of one part, with a warning when the machine was busy.
fn load_line(r: &BenchReport, part: Part) -> String {
    match r.load.iter().find(|l| l.part == part) {
        Some(l) => format!(
            "   load: {}{}\n",
            l.load.describe(),
            if l.load.is_busy() {
                " -- WARNING: the machine was not quiet, figures are disturbed"
            } else {
                ""
            }
        ),
        None => String::new(),
    }
}

/// Part 4's figures.
fn render_capacity(section: &Outcome<CapacitySection>) -> String {
    let c = match section {
        Outcome::Measured(c) => c,
        other => {
            let why = other.why_not().unwrap_or_default();
            return if why.contains("tracer is not available") {
                format!("   tracing: {why}\n")
            } else {
                format!("   {why}\n")
            };
        }
    };
    let mut out = format!(
        "   ring buffer {} MiB; generator: {}\n",
        c.ring_bytes >> 20,
        c.generator
    );
    out.push_str(&format!(
        "   {:>8} {:>12} {:>14} {:>16} {:>10}   {}\n",
        "threads", "target/s", "calls/s", "delivered/s", "lost", "fullest CPU log"
    ));
    for s in &c.steps {
        let [threads, target, calls, delivered, lost, fullest] = capacity::step_cells(s);
        out.push_str(&format!(
            "   {threads:>8} {target:>12} {calls:>14} {delivered:>16} {lost:>10}   {fullest}\n"
        ));
    }
    let (lossless, lossy) = capacity::loss_bounds(c);
    out.push_str(&format!(
        "   highest rate carried without loss: {lossless}; lowest rate that lost events: {lossy}\n"
    ));
    out.push_str(&format!("   {}\n", capacity::drain_ceiling_sentence(c)));
    for cause in capacity::loss_causes(c) {
        out.push_str(&format!("   {cause}\n"));
    }
    out.push_str(&format!("   {}\n", capacity::per_call_cost_sentence(c)));
    out.push_str("   densest cells of the default `netcopy run` sweep, traced:\n");
    for w in &c.workloads {
        match w {
            Outcome::Measured(w) => {
                let [label, offered, delivered, lost, ring, inflight] = capacity::workload_cells(w);
                out.push_str(&format!(
                    "     {label:<28} {offered:>10} calls/s, {delivered:>10} delivered/s, {lost} lost (ring full {ring}, in-flight map full {inflight})\n"
                ))
            }
            other => out.push_str(&format!("     {}\n", other.why_not().unwrap_or_default())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{fixtures::report, markdown, targets::targets};

    #[test]
    fn text_and_markdown_name_every_part() {
        let mut r = report(Some(1.0));
        r.targets = targets(&r);
        let text = render(&r);
        for needle in [
            "1. against iperf3",
            "2. against bare send loops",
            "3. the ceiling",
            "4. probe overhead",
            "5. trace capacity",
            "tracing: not measured: the tracer is not available in this build",
            "[NOT met     ]",
            "by the kernel's accounting (one more run): the programs took 0.0100 CPU ns per \
             payload byte: +2.0% of the no-probe CPU per byte",
            "netcopy_recv_copy_tp_btf",
            "an empty program on tp_btf skb_copy_datagram_iovec ran 70 ns per call",
            "a second no-probe window (the control) came out at +0.2% (95% interval -1.9% \
             to +1.7%)",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        let md = markdown::render(&r);
        assert!(md.contains("## Method") && md.contains("## Targets"));
        assert!(md.contains(&r.machine.cpu_model));
    }

    #[test]
    fn both_renderers_show_the_same_capacity_figures() {
        let stats = |events: u64, ring: u64| {
            let mut stats = serde_json::json!({"events": events, "lost_ring_full": ring,
                "lost_inflight_full": 1, "seconds": 2.0, "drain_cpu_seconds": 0.1,
                "notes": []});
            if ring > 100 {
                // The lossy step: its fullest log was full, after a 75 ms absence.
                stats["ring"] = serde_json::json!({"records_per_cpu": 30840,
                    "peak_waiting": 30840, "peak_away_ns": 75_000_000u64,
                    "longest_away_ns": 75_000_000u64, "longest_drain_ns": 2_000_000u64,
                    "drains": 40});
            }
            stats
        };
        let section: CapacitySection = serde_json::from_value(serde_json::json!({
            "ring_bytes": 8u32 << 20, "generator": "gen", "ring_records": 61680,
            "steps": [
                {"target_per_s": 10000.0, "threads": 1, "calls_per_s": 9998.4,
                 "calls": 19996, "stats": stats(19996, 0)},
                {"target_per_s": null, "threads": 2, "calls_per_s": 2575552.0,
                 "calls": 5151104, "stats": stats(5151000, 103)},
            ],
            "lossless_events_per_s": 9998.0, "lowest_lossy_calls_per_s": 2575552.0,
            "workloads": [{"status": "measured", "label": "one-copy 1K x1", "stats": stats(4000, 3)}],
        }))
        .expect("a capacity section");
        let text = render_capacity(&Outcome::Measured(section.clone()));
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(
            rows.contains(&vec!["1", "10000", "9998", "9998", "1"]),
            "{text}"
        );
        assert!(
            rows.contains(&vec![
                "2", "unpaced", "2575552", "2575500", "104", "100.0%", "after", "75.0", "ms"
            ]),
            "{text}"
        );
        // 2 CPUs (61680 records in all, 30840 each): 1.29M calls/s per CPU fill a log
        // in 24 ms, well inside the reader's 75 ms absence.
        let cause = "2 generator thread(s) at 2575552 calls/s lost 104: a CPU's log (30840 \
                     records) lasts about 23.9 ms at this rate; fullest CPU log: 30840 of \
                     30840 records waiting (100.0%), found 75.0 ms after the reader's \
                     previous drain; longest drain 2.0 ms; the reader's absence was at \
                     least half of that, so most likely a log filled while it was away \
                     (inferred from the two times)";
        assert!(text.contains(cause), "{text}");
        assert!(
            text.contains(
                "highest rate carried without loss: 9998 events/s; lowest rate that lost \
                 events: 2575552 calls/s"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "one-copy 1K x1                     2002 calls/s,       2000 delivered/s, 4 \
                 lost (ring full 3, in-flight map full 1)"
            ),
            "{text}"
        );
        let mut r = report(Some(1.0));
        r.trace_capacity = Outcome::Measured(section);
        let md = markdown::render(&r);
        assert!(md.contains("| 1 | 10000 | 9998 | 9998 | 1 |  |\n"), "{md}");
        assert!(
            md.contains("| 2 | unpaced | 2575552 | 2575500 | 104 | 100.0% after 75.0 ms |\n"),
            "{md}"
        );
        assert!(md.contains(&format!("- {cause}\n")), "{md}");
        assert!(
            md.contains("- highest rate carried without loss: **9998 events/s**"),
            "{md}"
        );
        assert!(
            md.contains("| one-copy 1K x1 | 2002 | 2000 | 4 (3, 1) |\n"),
            "{md}"
        );
    }
}
