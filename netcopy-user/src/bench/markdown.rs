//! BENCHMARKS.md: the method and the figures of one `netcopy bench` run.

use super::{
    capacity, method, ours,
    overhead::WINDOW_MS,
    peers::ZERO_COPY_MECHANISMS,
    schema::{BenchReport, Comparison, Instrument, Outcome, PairedFigure, CONFIDENCE},
    targets::{RELATIVE_LIMITS, TARGET_BARE_RATIO, TARGET_PEER_RATIO},
};
use crate::util::{stats::Summary, units::format_size};

fn cell(s: &Summary, digits: usize) -> String {
    format!(
        "{:.*} ({:.*} – {:.*})",
        digits, s.median, digits, s.min, digits, s.max
    )
}

fn why(o: Option<String>) -> String {
    o.unwrap_or_default().replace('|', "\\|")
}

/// BENCHMARKS.md.
pub(crate) fn render(r: &BenchReport) -> String {
    let m = &r.machine;
    let peer = ours::peer().name;
    let mut out = String::new();
    out.push_str("# netcopy benchmarks\n\n");
    out.push_str(
        "Written by `netcopy bench --write-markdown BENCHMARKS.md` (`cargo xtask bench` runs it \
         as root after `cargo xtask build`). Every figure below comes from the run described \
         here; rerun on your machine to get yours. No test asserts any of these speeds.\n\n",
    );
    out.push_str("## Machine and run\n\n| | |\n|---|---|\n");
    let iperf = r
        .peers
        .measured()
        .map(|p| match &p.iperf3 {
            Outcome::Measured(i) => i.version.clone(),
            other => why(other.why_not()),
        })
        .unwrap_or_else(|| "not used".into());
    for (k, v) in [
        ("CPU", m.cpu_model.clone()),
        (
            "CPUs",
            format!(
                "{}{}",
                m.cpus,
                if m.virtualized {
                    " (virtual machine: `hypervisor` flag set)"
                } else {
                    ""
                }
            ),
        ),
        (
            "Memory",
            m.memory_bytes.map_or("unknown".into(), |b| {
                format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
            }),
        ),
        (
            "Last-level cache (sysfs)",
            m.llc_bytes
                .map_or("unknown".into(), |b| format!("{} MiB", b >> 20)),
        ),
        ("Kernel", m.kernel.clone()),
        ("Date (UTC)", m.date.clone()),
        ("Source", m.source.describe()),
        ("Tool", r.tool.clone()),
        ("iperf3", iperf),
        (
            "Rounds",
            format!(
                "{} per comparison, {} s per run, sides alternating (ABAB…); probe overhead: \
                 {} blocks of {} ms windows",
                r.rounds,
                r.seconds,
                r.overhead.measured().map_or(0, |o| o.blocks),
                WINDOW_MS
            ),
        ),
        ("Whole run", format!("{:.0} s", r.elapsed_seconds)),
    ] {
        out.push_str(&format!("| {k} | {v} |\n"));
    }

    out.push_str("\n## Method\n\n");
    out.push_str(&method::text(r.seconds));
    out.push_str(&format!("\nOn `iperf3 -Z`: {ZERO_COPY_MECHANISMS}\n"));

    out.push_str("\n## Results\n\n### 1. Against iperf3\n\n");
    match &r.peers {
        Outcome::Measured(p) => {
            out.push_str(&comparison_table(
                &p.comparisons,
                "iperf3",
                &[ZERO_COPY_MECHANISMS],
            ));
        }
        other => out.push_str(&format!("{}\n", why(other.why_not()))),
    }

    out.push_str("\n### 2. Against bare send loops\n\n");
    match &r.bare {
        Outcome::Measured(b) => {
            out.push_str(&format!(
                "{} messages, {} s per run, {}.\n\n",
                format_size(b.size),
                b.seconds,
                b.pinned_cpu.map_or("not pinned".into(), |c| format!(
                    "server (or loop) and receiver on CPU {c}"
                ))
            ));
            out.push_str(&comparison_table(&b.comparisons, "bare loop", &[]));
        }
        other => out.push_str(&format!("{}\n", why(other.why_not()))),
    }

    out.push_str("\n### 3. The ceiling\n\n");
    match &r.ceiling {
        Outcome::Measured(c) => {
            out.push_str(&format!(
                "- memcpy, 1 thread, {} MiB buffers: **{} GB/s** (median, min – max of {} passes)\n\
                 - estimated loopback TCP ceiling: **{:.1} Gbit/s per stream**, {:.1} Gbit/s for all {} CPUs\n",
                c.memcpy.buffer_bytes >> 20,
                cell(&c.memcpy.gbytes_per_s, 2),
                c.memcpy.passes,
                c.per_stream_gbps,
                c.machine_gbps,
                m.cpus
            ));
            for note in &c.memcpy.notes {
                out.push_str(&format!("- note: {note}\n"));
            }
            for (label, best) in [
                ("single stream", &c.best_single_stream),
                ("several streams", &c.best_multi_stream),
            ] {
                if let Some(b) = best {
                    out.push_str(&format!(
                        "- our best, {label}: `{}` at {:.2} Gbit/s = **{:.0}%** of the ceiling\n",
                        b.what,
                        b.gbps,
                        b.fraction_of_ceiling * 100.0
                    ));
                }
            }
        }
        other => out.push_str(&format!("{}\n", why(other.why_not()))),
    }

    out.push_str("\n### 4. Probe overhead\n\n");
    match &r.overhead {
        Outcome::Measured(o) => {
            out.push_str(
                "| | Gbit/s (windows) | CPU ns per payload byte (windows) | throughput overhead | CPU overhead | load + first attach | switching on |\n\
                 |---|---|---|---|---|---|---|\n",
            );
            for v in &o.variants {
                match v {
                    Outcome::Measured(v) => out.push_str(&format!(
                        "| {} | {} | {} | {} | {} | {} | {} |\n",
                        v.instrument.label(),
                        cell(&v.gbps, 2),
                        v.cpu_ns_per_byte
                            .as_ref()
                            .map_or_else(|| why(v.cpu_unavailable.clone()), |c| cell(c, 4)),
                        pct(v.instrument, v.throughput_loss),
                        pct(v.instrument, v.cpu_increase),
                        v.setup_seconds
                            .as_ref()
                            .map_or("–".into(), |s| format!("{:.2} s", s.median)),
                        v.switch_seconds
                            .as_ref()
                            .map_or("–".into(), |s| format!("{:.3} s", s.median)),
                    )),
                    other => out.push_str(&format!("| {} | | | | | | |\n", why(other.why_not()))),
                }
            }
            out.push_str(&format!(
                "\n{} blocks; overheads are the median of the blocks' overheads, each against \
                 the no-probe window of its block, with the distribution-free {:.0}% interval \
                 of that median.\n",
                o.blocks,
                CONFIDENCE * 100.0
            ));
            for v in o.variants.iter().filter_map(Outcome::measured) {
                for e in &v.evidence {
                    out.push_str(&format!("\n- {}: {e}", v.instrument.label()));
                }
            }
            if let Some(noise) = o.noise_sentence() {
                out.push_str(&format!("\n- noise: {noise}"));
            }
            // Beside the floors: what makes the kernel's dispatch to a program costly here.
            out.push_str(&format!(
                "\n- CPU mitigations: {}",
                r.machine.mitigations_sentence()
            ));
            out.push('\n');
            for v in o.variants.iter().filter_map(Outcome::measured) {
                match &v.program_cost {
                    Some(Outcome::Measured(cost)) => {
                        out.push_str(&format!(
                            "\n**{}**, {}.\n\n\
                             | program | hook | calls per message | ns per call (accounting floor included) |\n\
                             |---|---|---|---|\n",
                            v.instrument.label(),
                            cost.summary()
                        ));
                        for p in &cost.programs {
                            out.push_str(&format!(
                                "| `{}` | {} | {:.2} | {:.0} |\n",
                                p.program, p.hook, p.runs_per_message, p.ns_per_run
                            ));
                        }
                        out.push_str(&format!("\n- {}\n", cost.floor_text()));
                    }
                    Some(other) => out.push_str(&format!(
                        "\n- {}: kernel's accounting: {}\n",
                        v.instrument.label(),
                        why(other.why_not())
                    )),
                    None => {}
                }
            }
        }
        other => out.push_str(&format!("{}\n", why(other.why_not()))),
    }

    out.push_str("\n### 5. Trace capacity\n\n");
    match &r.trace_capacity {
        Outcome::Measured(c) => {
            out.push_str(&format!(
                "Ring buffer {} MiB (`netcopy trace`'s default).\n\n| generator threads | target calls/s | calls/s made | events/s delivered | lost | fullest CPU log, after the reader's absence |\n|---|---|---|---|---|---|\n",
                c.ring_bytes >> 20
            ));
            for s in &c.steps {
                out.push_str(&format!("| {} |\n", capacity::step_cells(s).join(" | ")));
            }
            let (lossless, lossy) = capacity::loss_bounds(c);
            out.push_str(&format!(
                "\n- highest rate carried without loss: **{lossless}**\n- lowest rate that lost events: **{lossy}**\n- {}\n{}- {}\n\n\
                 | densest default-sweep cell | calls/s | delivered/s | lost (ring full, in-flight map full) |\n|---|---|---|---|\n",
                capacity::drain_ceiling_sentence(c),
                capacity::loss_causes(c)
                    .iter()
                    .map(|cause| format!("- {cause}\n"))
                    .collect::<String>(),
                capacity::per_call_cost_sentence(c),
            ));
            for w in &c.workloads {
                match w {
                    Outcome::Measured(w) => {
                        let [label, offered, delivered, lost, ring, inflight] =
                            capacity::workload_cells(w);
                        out.push_str(&format!(
                            "| {label} | {offered} | {delivered} | {lost} ({ring}, {inflight}) |\n"
                        ))
                    }
                    other => out.push_str(&format!("| {} | | | |\n", why(other.why_not()))),
                }
            }
        }
        other => out.push_str(&format!("{}\n", why(other.why_not()))),
    }

    if !r.load.is_empty() {
        out.push_str(
            "\n### Load during the run\n\nCPU taken by other processes (not netcopy, its \
             servers or iperf3) and by the hypervisor (steal) while each part ran: on a shared \
             2-CPU machine the main source of noise.\n\n| part | other processes | steal |\n|---|---|---|\n",
        );
        for l in &r.load {
            out.push_str(&format!(
                "| {} | {:.1}% of the CPUs | {:.1}% |\n",
                l.part.name(),
                l.load.other_pct,
                l.load.steal_pct
            ));
        }
    }

    out.push_str("\n## Targets\n\n| target | measured | |\n|---|---|---|\n");
    for t in &r.targets {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            t.goal,
            t.measured.replace('|', "\\|"),
            t.verdict.word()
        ));
    }
    out.push_str(&format!(
        "\nTargets: {peer} ≥ {TARGET_PEER_RATIO} × iperf3 at the same settings (the unpinned \
         single stream in each placement); each server ≥ {TARGET_BARE_RATIO} × the bare loop \
         of its mechanism; {}, each in \
         time and in CPU per payload byte, block by block (a peer whose counts disagreed \
         with netcopy's, or that lost events, is not compared); no lost events at the \
         default sweep's event rate. A throughput ratio is judged on its rounds' ratios \
         (each round a pair of runs side by side): met when the distribution-free interval \
         of their median is at or above the limit, NOT met when it is all below, undecided \
         otherwise (the unpinned placements, whose rounds are not pairs, by their medians). \
         They are reported, never asserted.\n",
        RELATIVE_LIMITS
            .iter()
            .map(|l| l.describe())
            .collect::<Vec<_>>()
            .join("; ")
    ));
    out.push_str(
        "\n## Reproduce\n\n```sh\n$ cargo xtask bench                       # build, then netcopy bench as root\n\
         $ sudo target/release/netcopy bench --rounds 9 --seconds 3 --json\n\
         $ sudo target/release/netcopy bench --write-markdown BENCHMARKS.md\n```\n",
    );
    out
}

/// A table of comparisons (netcopy against `theirs`), then each one's notes but those in
/// `skip` (said once elsewhere).
fn comparison_table(list: &[Outcome<Comparison>], theirs: &str, skip: &[&str]) -> String {
    let mut out =
        format!("| comparison | netcopy, Gbit/s | {theirs}, Gbit/s | ratio |\n|---|---|---|---|\n");
    for c in list {
        match c {
            Outcome::Measured(c) => out.push_str(&format!(
                "| {} (`{}` vs `{}`) | {} | {} | {} |\n",
                c.name,
                c.ours_label,
                c.theirs_label,
                cell(&c.ours_gbps, 2),
                match &c.theirs_gbps {
                    Outcome::Measured(t) => cell(t, 2),
                    other => why(other.why_not()),
                },
                c.ratio.map_or("–".into(), |r| format!("{r:.3}"))
            )),
            other => out.push_str(&format!("| {} | | | |\n", why(other.why_not()))),
        }
    }
    let notes = list
        .iter()
        .filter_map(Outcome::measured)
        .flat_map(|c| c.notes.iter().map(move |n| (&c.name, n)))
        .filter(|(_, n)| !skip.contains(&n.as_str()));
    for (name, n) in notes {
        out.push_str(&format!("\n- {name}: {n}"));
    }
    out.push('\n');
    out
}

fn pct(instrument: Instrument, value: Option<PairedFigure>) -> String {
    if instrument == Instrument::None {
        return "(baseline)".into();
    }
    value.map_or("n/a".into(), |p| p.text())
}
