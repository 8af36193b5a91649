//! BENCHMARKS.md: the method and the figures of one `netcopy bench` run.

use super::{
    capacity, ours,
    overhead::{SETTLE_MS, WINDOW_MS},
    peers::{PEER_SIZE, PEER_STREAMS, ZERO_COPY_MECHANISMS},
    schema::{BenchReport, Comparison, Instrument, Outcome, PairedFigure, CONFIDENCE},
    targets::{RELATIVE_LIMITS, TARGET_PEER_RATIO},
    windows::OVERHEAD_SIZE,
};
use crate::{
    util::{stats::Summary, units::format_size},
    workload::modes::ModeSpec,
};

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
    out.push_str(&format!(
        "All traffic is loopback TCP (127.0.0.1). Each comparison runs its sides in one \
         invocation, alternating them round by round, and reports the median of the rounds \
         with min – max in parentheses; ratios are ratios of medians. Throughput is payload \
         bits per second (10^9 bits = 1 Gbit).\n\n\
         1. **Against iperf3.** `netcopy server --mode {peer}` (a child process) and the \
         netcopy client in the benchmark process, stream pattern, {size} messages, for {s} s; \
         against `iperf3 -c 127.0.0.1 -l {size} -t {s} --json` with an `iperf3 -s` started on \
         a free port for the run and stopped afterwards, taking the receiver's \
         `end.sum_received.bits_per_second`. netcopy's client verifies every message \
         (CRC32C of the payload, sequence number, field stamps) and reads the 16-byte \
         message header with its own `read()`; iperf3's receiver discards the data. The same \
         once more with both sides on one CPU (netcopy's server and client threads pinned \
         with `sched_setaffinity`, iperf3 with `-A n,n`), which takes away the parallelism \
         between sender and receiver and compares CPU cost per byte: there netcopy's client \
         runs twice, with `--verify framing` (sequence numbers, lengths and field stamps, no \
         payload checksum: the receive work of iperf3, the like-for-like comparison and the \
         one the target reads) and with its full verification (the difference is what the \
         CRC32C costs); with {p} streams (`--threads {p}` vs `-P {p}`); and netcopy \
         {zero_copy} vs `iperf3 -Z`.\n\
         2. **The ceiling.** Single-thread `std::ptr::copy_nonoverlapping` between two \
         buffers of at least 256 MiB and at least twice the last-level cache (both written \
         before timing), one warm-up pass and 5 timed passes, each through `black_box`. \
         Loopback TCP copies every payload byte twice in the kernel (into the socket buffer \
         on send, out of it on receive), so one stream cannot move more than roughly memcpy / 2 \
         bytes per second of one core: that estimate is the per-stream ceiling, and CPUs × it \
         the whole machine's. It is an estimate, not a bound: the two copies run on different \
         CPUs in parallel, and the kernel's copy routines are not glibc's memcpy.\n\
         3. **Probe overhead.** {peer_capitalized}, {osize} messages, 1 thread, server and client \
         pinned to one CPU, one connection running from start to end while the instruments \
         take turns on it: blocks of one {window} ms window each, in the order control, empty \
         programs on counting's hooks, copy counting, no probes, syscall tracing, empty \
         programs on tracing's hooks, every window opening {settle} ms after its switch. No \
         probes and control: nothing attached. Empty programs: a program that does nothing \
         on each hook an instrument uses (copy counting's tp_btf hooks; for tracing, those \
         and the trace's classic syscall tracepoints), so that its overhead is the kernel's \
         dispatch to a program there: the floor under any instrument on those hooks, which \
         the targets report beside each figure. Copy counting: `CopyProbes::load()` \
         with the server and client processes watched. Syscall tracing: the probes loaded with \
         room for a trace, `trace::SyscallTracer` started on both processes and its per-CPU \
         rings drained by a thread of the benchmark process, as `netcopy trace` does. Both \
         are loaded once before the first block (load time reported) and switched by \
         detaching and attaching their programs (`CopyProbes::suspend`, `resume`; the \
         programs stay loaded, so a switch takes milliseconds, outside every window). \
         Throughput is the payload bytes the client verified in the window; CPU is the CPU \
         time of the server process plus the benchmark process (client thread and \
         trace-draining thread) in the window, per payload byte. Why windows: on a shared \
         virtual machine loopback throughput wanders by 10-30% between runs and within a \
         run, which drowns a 3% overhead when whole runs are compared; but it wanders \
         slowly (100 ms windows of one run correlate at 0.7-0.8 with their neighbours), so \
         each instrument's window is compared with the no-probe window next to it in the \
         same block, and the overhead is the median of the blocks' overheads, with its \
         distribution-free {conf:.0}% interval (order statistics of the binomial \
         distribution: no assumption about the noise's shape). A target is met when that \
         whole interval is within the limit, not met when it is all beyond it, and \
         undecided otherwise. The interval treats the blocks as independent draws: slow \
         changes on the host that move the overhead itself, not only the throughput, make \
         separate runs differ by more than one run's interval, so a verdict near a limit \
         deserves a second run (`--rounds` and `--seconds` raise the number of blocks). The \
         order puts each of netcopy's instruments next to the no-probe window, with a fast \
         switch between them (attaching takes ~15 ms, detaching copy counting ~60 ms); \
         detaching the trace, or the empty programs on its tracepoints, takes most of a \
         second (the kernel waits for an RCU grace period for each classic tracepoint, under \
         one lock), so those switches fall after syscall tracing's window and between \
         blocks. The control window, no probes either, is compared with the no-probe window \
         like an instrument from three windows away (the empty programs are two away, \
         netcopy's instruments one): its figure is the method's own error, if anything \
         overstated. Why pinned: unpinned, this stream is bimodal \
         on a 2-CPU guest (server and client on one CPU or on two, picked by the scheduler \
         at random); pinned, every nanosecond a probe adds to the pipeline shows in the \
         throughput. The trace-draining thread is not pinned. Then, for each instrument, one more run with the \
         kernel's own accounting of its eBPF programs on (`BPF_ENABLE_STATS`: runs and \
         nanoseconds of every program, read before and after the run by program id): per \
         program, calls per message and nanoseconds per call. The accounting costs two clock \
         reads per call, so an empty program attached to tp_btf `skb_copy_datagram_iovec` \
         (which fires on the same CPU several times per message) measures that floor in the \
         same run, and it is taken off every program's mean. The programs' net time (plus, \
         for tracing, the draining thread's CPU time while the workload ran; stopping the \
         trace and decoding and summarizing its calls afterwards is reported beside it) per \
         payload byte, against the no-probe \
         windows' median CPU per byte, is the overhead by the kernel's accounting: exact where \
         the wall clock is noisy, but a lower bound, since the kernel's dispatch to the \
         programs and the cache lines they take from the workload are not in it.\n\
         4. **Trace capacity.** {generator}. First one thread unpaced with no trace \
         running, then traced: rates from 10 000 to 600 000 calls per second, \
         then unpaced with 1 thread, one thread per CPU and two per CPU, {s} s each, counting \
         the events delivered and those lost (a CPU's ring full, in-flight map full). The \
         one-thread unpaced rates, traced and untraced, give what a traced call costs the \
         thread that makes it, all in: the programs, the kernel's dispatch to them and the \
         cache lines they take. Then the densest cells of `netcopy run`'s default sweep \
         (1K messages; {dense}; 1 and 8 threads; 1 s each) are traced \
         and their events and losses counted. The draining thread runs at nice -20, as in \
         `netcopy trace`: at the default nice it gets a fair share only (1/17 of a CPU against \
         16 busy threads in the 8-thread cells) and the rings fill; its CPU time per event \
         in the busiest unpaced step gives the rate it carries with a CPU to itself.\n",
        size = format_size(PEER_SIZE),
        s = r.seconds,
        p = PEER_STREAMS,
        osize = format_size(OVERHEAD_SIZE),
        window = WINDOW_MS,
        settle = SETTLE_MS,
        conf = CONFIDENCE * 100.0,
        generator = capitalized(capacity::GENERATOR),
        peer = peer,
        peer_capitalized = capitalized(peer),
        zero_copy = names(ours::zero_copy_modes(), " and "),
        dense = names(capacity::dense_modes(), ", "),
    ));
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
                "Ring buffer {} MiB (`netcopy trace`'s default).\n\n| generator threads | target calls/s | calls/s made | events/s delivered | lost |\n|---|---|---|---|---|\n",
                c.ring_bytes >> 20
            ));
            for s in &c.steps {
                out.push_str(&format!(
                    "| {} | {} | {:.0} | {:.0} | {} |\n",
                    s.threads,
                    s.target_per_s
                        .map_or("unpaced".into(), |r| format!("{r:.0}")),
                    s.calls_per_s,
                    s.delivered_per_s(),
                    s.stats.lost()
                ));
            }
            out.push_str(&format!(
                "\n- highest rate carried without loss: **{}**\n- lowest rate that lost events: **{}**\n- {}\n- {}\n\n\
                 | densest default-sweep cell | calls/s | delivered/s | lost (ring full, in-flight map full) |\n|---|---|---|---|\n",
                c.lossless_events_per_s
                    .map_or("no lossless step".into(), |r| format!("{r:.0} events/s")),
                c.lowest_lossy_calls_per_s.map_or(
                    "no loss at any rate the generator reached".into(),
                    |r| format!("{r:.0} calls/s")
                ),
                capacity::drain_ceiling_sentence(c),
                capacity::per_call_cost_sentence(c),
            ));
            for w in &c.workloads {
                match w {
                    Outcome::Measured(w) => out.push_str(&format!(
                        "| {} | {:.0} | {:.0} | {} ({}, {}) |\n",
                        w.label,
                        w.stats.offered_per_second(),
                        w.stats.events_per_second(),
                        w.stats.lost(),
                        w.stats.lost_ring_full,
                        w.stats.lost_inflight_full
                    )),
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
        "\nTargets: {peer} ≥ {TARGET_PEER_RATIO} × iperf3 at the same settings; {}, each in \
         time and in CPU per payload byte, block by block (a peer whose counts disagreed \
         with netcopy's, or that lost events, is not compared); no lost events at the \
         default sweep's event rate. They are reported, never asserted.\n",
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

/// `Threads of ...`: the first letter upper case.
fn capitalized(text: &str) -> String {
    match text.get(..1) {
        Some(first) => first.to_uppercase() + &text[1..],
        None => text.to_string(),
    }
}

/// The modes' names, joined by `separator`.
fn names(modes: impl Iterator<Item = &'static ModeSpec>, separator: &str) -> String {
    modes.map(|s| s.name).collect::<Vec<_>>().join(separator)
}

fn pct(instrument: Instrument, value: Option<PairedFigure>) -> String {
    if instrument == Instrument::None {
        return "(baseline)".into();
    }
    value.map_or("n/a".into(), |p| p.text())
}
