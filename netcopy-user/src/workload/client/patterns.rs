//! The traffic patterns (stream, rr) and the client thread that runs one on its
//! connection and its share of the messages, timing each latency sample.

use std::{
    net::TcpStream,
    os::fd::AsRawFd,
    sync::{Arc, Barrier},
    time::Instant,
};

use super::{
    config::{ClientConfig, Pattern, ReceiveMechanism, Verification},
    receive::{read_message, read_reply, Reader, ThreadOutcome, Verifier},
    zerocopy::ZeroCopyReceiver,
};
use crate::{
    workload::message::FieldLayout,
    workload::protocol::{Request, REQUEST_LEN},
    workload::sockets,
};

/// Bytes read per read() call at most; bounds memory at 256 threads.
const READ_CHUNK: usize = 256 << 10;

/// What one thread is given: its connection and its share of the run.
pub(super) struct ThreadPlan {
    pub(super) index: usize,
    pub(super) stream: TcpStream,
    pub(super) config: ClientConfig,
    /// Messages for this thread; `None` runs until the deadline.
    pub(super) share: Option<u64>,
    pub(super) barrier: Arc<Barrier>,
}

pub(super) fn run_thread(plan: ThreadPlan) -> ThreadOutcome {
    let mut outcome = ThreadOutcome::new();
    outcome.progress = plan.config.progress.clone();
    let layout = match FieldLayout::new(plan.config.size) {
        Ok(layout) => layout,
        Err(err) => {
            outcome.error = Some(err.to_string());
            plan.barrier.wait();
            return outcome;
        }
    };
    let mut verifier = Verifier {
        size: plan.config.size,
        crc: plan.config.verification == Verification::Full,
        stamp_offsets: layout.stamp_offsets().collect(),
        chunk: vec![0u8; (plan.config.size as usize).min(READ_CHUNK)],
    };
    let zerocopy = match plan.config.recv {
        ReceiveMechanism::Copy => None,
        ReceiveMechanism::ZeroCopy => match ZeroCopyReceiver::new(&plan.stream) {
            Ok(receiver) => Some(receiver),
            Err(err) => {
                outcome.error = Some(format!("thread {}: --recv zerocopy: {err}", plan.index));
                plan.barrier.wait();
                return outcome;
            }
        },
    };
    plan.barrier.wait();
    outcome.started = Some(Instant::now());
    let mut reader = Reader::new(
        &plan.stream,
        plan.config.limit,
        plan.config.io_timeout,
        plan.config.stop.as_deref(),
        zerocopy,
    );
    let result = match plan.config.pattern {
        Pattern::Stream => stream_pattern(&plan, &mut reader, &mut verifier, &mut outcome),
        Pattern::Rr => rr_pattern(&plan, &mut reader, &mut verifier, &mut outcome),
    };
    outcome.ended = Some(Instant::now());
    // Bytes the kernel handed over and the run ended before they were used count as
    // received (and discarded), as a read() of them would.
    let handed_over = reader.zerocopy.as_ref().map_or(0, |zc| zc.unconsumed());
    outcome.zerocopy = reader.zerocopy.as_ref().map(|zc| zc.figures);
    outcome.received_bytes = reader.received + handed_over;
    let accounted = outcome.reply_header_bytes
        + outcome.reply_error_text_bytes
        + outcome.message_header_bytes
        + outcome.bytes;
    outcome.discarded_bytes = outcome.received_bytes.saturating_sub(accounted);
    if let Err(message) = result {
        outcome.error = Some(format!("thread {}: {message}", plan.index));
    }
    outcome
}

fn send_request(plan: &ThreadPlan, outcome: &mut ThreadOutcome, count: u64) -> Result<(), String> {
    let request = Request {
        size: plan.config.size,
        count,
    }
    .encode();
    sockets::send_all(plan.stream.as_raw_fd(), &request).map_err(|err| {
        format!(
            "sending request {} failed: {err}{}",
            outcome.requests_sent + 1,
            if sockets::is_peer_gone(&err) {
                " (the server went away)"
            } else {
                ""
            }
        )
    })?;
    outcome.requests_sent += 1;
    outcome.request_bytes_sent += REQUEST_LEN as u64;
    Ok(())
}

fn stream_pattern(
    plan: &ThreadPlan,
    reader: &mut Reader,
    verifier: &mut Verifier,
    outcome: &mut ThreadOutcome,
) -> Result<(), String> {
    send_request(plan, outcome, plan.share.unwrap_or(0))?;
    let mut previous = Instant::now();
    if !read_reply(reader, outcome)? {
        return Ok(());
    }
    let mut seq = 0u64;
    while plan.share.is_none_or(|n| seq < n) {
        if !read_message(reader, verifier, outcome, seq)? {
            return Ok(());
        }
        let now = Instant::now();
        outcome.record(now - previous);
        previous = now;
        seq += 1;
        reader.first_message_arrived();
        if reader.deadline_passed() {
            break;
        }
    }
    Ok(())
}

fn rr_pattern(
    plan: &ThreadPlan,
    reader: &mut Reader,
    verifier: &mut Verifier,
    outcome: &mut ThreadOutcome,
) -> Result<(), String> {
    let mut transactions = 0u64;
    while plan.share.is_none_or(|n| transactions < n) && !reader.deadline_passed() {
        let start = Instant::now();
        send_request(plan, outcome, 1)?;
        // A transaction once started is finished (the idle limit still bounds it): cut
        // off, its message would be lost to the figures and the server would find its
        // client gone in the middle of a send.
        let (deadline, stop) = (reader.deadline.take(), reader.stop.take());
        let answered = read_reply(reader, outcome)
            .and_then(|ok| Ok(ok && read_message(reader, verifier, outcome, 0)?));
        (reader.deadline, reader.stop) = (deadline, stop);
        if !answered? {
            return Ok(());
        }
        outcome.record(start.elapsed());
        transactions += 1;
        reader.first_message_arrived();
    }
    Ok(())
}
