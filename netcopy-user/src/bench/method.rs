//! The Method section of BENCHMARKS.md: how each part measures, in the order of the
//! parts.

use super::{
    capacity, ours,
    overhead::{SETTLE_MS, WINDOW_MS},
    peers::{PEER_SIZE, PEER_STREAMS},
    schema::CONFIDENCE,
    windows::OVERHEAD_SIZE,
};
use crate::{util::units::format_size, workload::modes::ModeSpec};

/// The method, for runs of `seconds` seconds.
pub(super) fn text(seconds: u32) -> String {
    let peer = ours::peer().name;
    format!(
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
     {zero_copy} vs `iperf3 -Z`. The unpinned single stream is bimodal on a 2-CPU guest \
     (sender and receiver on one CPU or on two, picked by the scheduler each run): a \
     thread of the benchmark reads, every 10 ms, the CPU that the busiest thread of the \
     sending and of the receiving process last ran on (/proc/PID/task/TID/stat, CPU time \
     from schedstat), each round goes to the placement it spent most samples in, and \
     that comparison and its target are given per placement, not as one median of a \
     mixture.\n\
     2. **Against bare send loops.** Whether a server leaves speed on the table that its \
     mechanism would give: a loop written in the benchmark sends one {size} buffer again \
     and again with nothing else to do (no message structure), `sendmsg(fd, [buf], 0)` \
     against `netcopy server --mode {peer}`, and `sendmsg(fd, [buf], MSG_ZEROCOPY)` \
     after SO_ZEROCOPY against `netcopy server --mode` {msg_zerocopy}, its completions \
     drained from the error queue every 32 sends, whenever a send fails with ENOBUFS, \
     and to the last one at the end, as the kernel's msg_zerocopy selftest does. Both \
     send to the same receiver, a thread of the benchmark that connects (sending the \
     netcopy request where a server listens) and reads into a 256 KiB buffer and \
     discards, over loopback, sender and receiver pinned to one CPU, {s} s per run from \
     the first byte, rounds alternating; netcopy's rate is its payload (the wire less \
     its 16-byte message headers). Each zero-copy server runs twice: at its defaults, and \
     with `--zc-max-in-flight 4`. The loop has every send in flight read the same \
     buffer, where a server's in-flight messages are separate slots (up to 64 of {size} \
     each), which the kernel's copy on loopback reads from further out in the cache; \
     with 4 slots the two touch memory of the same order, so what is left of \
     the difference is the server's own work (no PMU here counts the cache misses, so \
     the footprint is inferred from the two rows, not measured).\n\
     3. **The ceiling.** Single-thread `std::ptr::copy_nonoverlapping` between two \
     buffers of at least 256 MiB and at least twice the last-level cache (both written \
     before timing), one warm-up pass and 5 timed passes, each through `black_box`. \
     Loopback TCP copies every payload byte twice in the kernel (into the socket buffer \
     on send, out of it on receive), so one stream cannot move more than roughly memcpy / 2 \
     bytes per second of one core: that estimate is the per-stream ceiling, and CPUs × it \
     the whole machine's. It is an estimate, not a bound: the two copies run on different \
     CPUs in parallel, and the kernel's copy routines are not glibc's memcpy.\n\
     4. **Probe overhead.** {peer_capitalized}, {osize} messages, 1 thread, server and client \
     pinned to one CPU, one connection running from start to end while the instruments \
     take turns on it: blocks of one {window} ms window each, in the order control, empty \
     programs on counting's hooks, bpftrace, copy counting, no probes, syscall tracing, \
     perf trace, strace -f, empty programs on tracing's hooks, every window opening \
     {settle} ms after its switch. No \
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
     programs and the cache lines they take from the workload are not in it. \
     **Peers**, the tools a user would run instead, take windows of their own on the \
     same workload: bpftrace with our script (`netcopy-user/src/bench/peer_tools/\
     copy_bytes.bt`: tracepoints sock:sock_send_length and skb:skb_copy_datagram_iovec \
     filtered by the two pids, summed in one map; bpftrace cannot reach tp_btf here, and \
     there are no kprobes) against copy counting; `perf trace -m N -p SERVER,BENCH -e \
     CALLS -o FILE` (N pages: what `netcopy trace`'s ring gives each CPU, so that neither \
     has the bigger buffer) and `strace -f -e trace=CALLS -o FILE -p SERVER -p BENCH`, \
     CALLS being the calls `netcopy trace` records, against syscall tracing. None of \
     them can be detached and attached again, so each is started before its window, \
     waited for until it demonstrably records (bpftrace's two probes have counted, \
     strace has attached every thread, perf trace's log grows), and stopped with SIGINT \
     after it: its switch is a process start and stop, outside the window. Its window \
     is bracketed by the tool itself: bpftrace prints its map on SIGUSR1 at both ends \
     (it answers up to 100 ms late, so the window ends at its reading); perf trace and \
     strace record a marker call the benchmark's main thread makes at both ends (a \
     `recvfrom` on an empty UDP socket of its own, known by its fd), and only the calls \
     between the markers count. The tool's own CPU time is in its windows' CPU. Each \
     peer's counts are checked against netcopy's before anything is compared: bytes \
     copied per payload byte against copy counting's (within 0.03), calls per message \
     against the trace's calls that started in its windows (within 5%); a peer that \
     disagreed or lost events is reported as such and not compared, and one not \
     installed is reported with what ran instead. The overhead targets compare netcopy \
     with the peers and with the floor block by block: in each block, netcopy's overhead \
     less the limit the other row of the block sets (0.8 × bpftrace's; empty programs \
     on its hooks + 1 point; perf trace's; 1/20 of strace's), in wall-clock time per \
     payload byte (the throughput overhead without the 100% bound of a loss, which \
     strace would hit) and in CPU per payload byte; met when the whole {conf:.0}% \
     interval of the median difference is at or below zero, not met when it is all \
     above, undecided otherwise. Beside the floors stands what the kernel reports in \
     /sys/devices/system/cpu/vulnerabilities: the retbleed, spec_rstack_overflow and \
     spectre_v2 mitigations make the indirect call to every program and its return \
     expensive, a cost of the machine rather than of any tool.\n\
     5. **Trace capacity.** {generator}. First one thread unpaced with no trace \
     running, then traced: rates from 10 000 to 600 000 calls per second, \
     then unpaced with 1 thread, one thread per CPU and two per CPU, {s} s each, counting \
     the events delivered and those lost (a CPU's ring full, in-flight map full). The \
     one-thread unpaced rates, traced and untraced, give what a traced call costs the \
     thread that makes it, all in: the programs, the kernel's dispatch to them and the \
     cache lines they take. Then the densest cells of `netcopy run`'s default sweep \
     (1K messages; {dense}; 1 and 8 threads; 1 s each) are traced \
     and their events and losses counted. The draining thread runs SCHED_DEADLINE (2 ms \
     of CPU every 5 ms), as in `netcopy trace` (SCHED_FIFO, then nice -20, where that is \
     refused): a normal thread, even at nice -20, woken while every CPU is busy waits for \
     the running thread's slice to end, and a SCHED_FIFO one was kept off its CPU for \
     50 ms at a time by the kernel's fair server, which a deadline thread with the \
     earlier deadline preempts; the rings fill meanwhile. Its CPU time per event in the \
     busiest unpaced step gives the rate it carries with a CPU to itself. Every drain \
     notes how many records the fullest CPU's log held and how long the thread had been \
     away from the logs before it, so that a loss says whether the reader was absent or \
     too slow; the records are kept in chunks whose pages a normal-priority thread \
     touches in advance, so that the drain does not fault them in.\n",
    size = format_size(PEER_SIZE),
    s = seconds,
    p = PEER_STREAMS,
    osize = format_size(OVERHEAD_SIZE),
    window = WINDOW_MS,
    settle = SETTLE_MS,
    conf = CONFIDENCE * 100.0,
    generator = capitalized(capacity::GENERATOR),
    peer = peer,
    peer_capitalized = capitalized(peer),
    zero_copy = names(ours::zero_copy_modes(), " and "),
    msg_zerocopy = names(ours::msg_zerocopy_modes(), " and "),
    dense = names(capacity::dense_modes(), ", "),
)
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
