//! `netcopy client`: its arguments, and the command that prints a client run's report.

use std::{
    io::{self, Write},
    process::ExitCode,
    time::Duration,
};

use crate::{
    util::units::{duration_arg, size_arg},
    workload::client::{
        report_text, run_client, ClientConfig, Pattern, ReceiveMechanism, RunLimit, Verification,
        MAX_THREADS,
    },
};

/// `netcopy client`.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("limit").required(true).args(["duration", "messages"])))]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, value_name = "ADDR:PORT")]
    connect: String,
    /// Payload bytes per message (K/M/G are binary units).
    #[arg(long, value_parser = size_arg, value_name = "SIZE")]
    size: u64,
    /// Client threads, one connection each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS as i64))]
    threads: u16,
    /// Run for this long (e.g. 10s, 500ms) from each connection's first message, which
    /// must come within --io-timeout; a partial last message is discarded.
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    duration: Option<Duration>,
    /// Total messages across all threads.
    #[arg(long, value_name = "N")]
    messages: Option<u64>,
    /// stream: one request per thread; rr: one request per message.
    #[arg(long, value_enum, default_value_t = Pattern::Stream)]
    pattern: Pattern,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// A server silent for this long is an error.
    #[arg(long, value_parser = duration_arg, default_value = "30s", value_name = "DURATION")]
    io_timeout: Duration,
    /// full: CRC32C of every payload too; framing: sequence numbers, lengths and field
    /// stamps only (the receive work of iperf3, for like-for-like throughput).
    #[arg(long, value_enum, default_value_t = Verification::Full)]
    verify: Verification,
    /// copy: recv() into the client's buffer; zerocopy: getsockopt(TCP_ZEROCOPY_RECEIVE)
    /// on a mapping of the socket, the kernel copying only what it cannot map (the
    /// report says how many bytes were mapped and how many copied, per connection).
    #[arg(long, value_enum, default_value_t = ReceiveMechanism::Copy)]
    recv: ReceiveMechanism,
}

impl ClientArgs {
    fn config(&self) -> ClientConfig {
        let limit = match (self.messages, self.duration) {
            (Some(n), _) => RunLimit::Messages(n),
            (None, Some(d)) => RunLimit::Duration(d),
            // clap's required group guarantees one of the two.
            (None, None) => RunLimit::Messages(0),
        };
        ClientConfig {
            connect: self.connect.clone(),
            size: self.size,
            threads: usize::from(self.threads),
            limit,
            pattern: self.pattern,
            io_timeout: self.io_timeout,
            verification: self.verify,
            recv: self.recv,
            progress: None,
            stop: None,
        }
    }
}

/// Runs `netcopy client`: prints the report (also the partial one of a failed run) and
/// exits non-zero on any failure.
pub fn run(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let (mut report, failure) = match run_client(&args.config()) {
        Ok(report) => (report, None),
        Err(failure) => (*failure.report, Some(failure.message)),
    };
    if let Some(message) = &failure {
        eprintln!("netcopy client: error: {message}");
        if report.messages > 0 || report.received_bytes > 0 {
            eprintln!("netcopy client: partial results of the failed run follow");
        }
    }
    // The cause belongs in the JSON too: a reader of stdout alone must see the failure.
    if let Some(message) = &failure {
        if !report.errors.contains(message) {
            report.errors.insert(0, message.clone());
        }
    }
    let text = if args.json {
        serde_json::to_string(&report)?
    } else {
        report_text(&report)
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush())?;
    Ok(if failure.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
