//! `netcopy agent`: serves phases to one authenticated controller at a time. What a phase
//! does (start a server, count its copies, report) is behind [`Phases`], so that this
//! file is only the protocol's state machine: authentication, one controller at a time,
//! bounded waits, and cleanup whatever the controller does. Nothing a peer sends can make
//! it panic, allocate more than a frame, or leave a phase running after the peer is gone.

use std::{
    io::{self, Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    auth::{Challenge, Role, Token},
    frame::{read_frame, write_frame, FrameError},
    messages::{
        AgentMessage, ControllerMessage, ErrorCode, HostInfo, PhaseRequest, PROTOCOL_VERSION,
    },
};

/// What a phase is, on this host. The agent calls `start`, then `end` or (when the
/// controller vanished or the agent is stopping) `abort`, never two phases at once.
pub trait Phases: Send + 'static {
    type Report: Serialize;
    /// The host the merged results will name, with the modes its kernel runs (a phase
    /// of any other mode is refused before `start`).
    fn host(&self) -> HostInfo;
    /// Starts the phase's server, reachable by the controller at `peer` through the
    /// local address `local` (the control connection's), and returns where it listens.
    fn start(&mut self, request: &PhaseRequest, local: IpAddr, peer: IpAddr) -> Result<SocketAddr>;
    /// Stops the server and reports what the phase counted.
    fn end(&mut self) -> Result<Self::Report>;
    /// Stops the server and drops what it counted.
    fn abort(&mut self);
}

/// Limits of a session.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// From the connection to the controller's proof.
    pub auth_timeout: Duration,
    /// Between two requests of a controller (a phase included): past it the controller
    /// is taken for gone, its phase aborted.
    pub idle_timeout: Duration,
    /// Exit after this many authenticated sessions (None: serve until stopped).
    pub max_sessions: Option<u64>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            auth_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            max_sessions: None,
        }
    }
}

/// How one session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The controller said Bye.
    Bye,
    /// Not authenticated (wrong token, replay, another version, garbage before Auth).
    Refused(String),
    /// The controller vanished, broke the framing or went quiet; its phase was aborted.
    Lost(String),
    /// The agent is stopping.
    Stopped,
}

/// How often blocked reads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Accepts controllers on `listener` until `stop` is set or `max_sessions` authenticated
/// sessions have ended; each session's end is passed to `on_end` (for the log).
pub fn serve<P: Phases>(
    listener: TcpListener,
    token: Token,
    phases: P,
    options: AgentOptions,
    stop: Arc<AtomicBool>,
    mut on_end: impl FnMut(SocketAddr, &SessionEnd),
) -> Result<()> {
    listener
        .set_nonblocking(true)
        .context("making the agent's listener non-blocking")?;
    let phases = Arc::new(Mutex::new(phases));
    let (done_tx, done_rx) = mpsc::channel::<(SocketAddr, SessionEnd)>();
    let mut active = false;
    let mut sessions = 0u64;
    loop {
        while let Ok((peer, end)) = done_rx.try_recv() {
            active = false;
            if !matches!(end, SessionEnd::Refused(_)) {
                sessions += 1;
            }
            on_end(peer, &end);
        }
        if stop.load(Ordering::Relaxed) && !active {
            return Ok(());
        }
        if options.max_sessions.is_some_and(|max| sessions >= max) && !active {
            return Ok(());
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                if active || stop.load(Ordering::Relaxed) {
                    refuse_busy(stream);
                    continue;
                }
                active = true;
                let (token, phases, options, stop, done) = (
                    token.clone(),
                    Arc::clone(&phases),
                    options.clone(),
                    Arc::clone(&stop),
                    done_tx.clone(),
                );
                thread::Builder::new()
                    .name("agent-session".into())
                    .spawn(move || {
                        let mut phases = phases.lock().unwrap_or_else(|p| p.into_inner());
                        let end = session(stream, &token, &mut *phases, &options, &stop);
                        let _ = done.send((peer, end));
                    })
                    .context("starting a session thread")?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Out of descriptors and the like: passing, and no reason to stop serving.
            Err(e) => {
                eprintln!("netcopy agent: accept failed: {e}");
                thread::sleep(POLL);
            }
        }
    }
}

/// A second controller is told why, without waiting on it for long.
fn refuse_busy(stream: TcpStream) {
    let _ = thread::Builder::new()
        .name("agent-busy".into())
        .spawn(move || {
            let mut stream = stream;
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = write_frame(
                &mut stream,
                &AgentMessage::<()>::Error {
                    code: ErrorCode::Busy,
                    message: "another controller is connected to this agent".into(),
                },
            );
        });
}

/// A control connection as a session uses it: a TCP stream in service; an in-memory
/// script of a controller's bytes in the fuzz target (fuzz/), which drives the whole
/// session with them, and in tests.
pub trait ControlStream {
    /// Readies the connection: reads that block at most [`POLL`] (so that the stop flag
    /// is seen), bounded writes.
    fn prepare(&self);
    /// This end's address and the peer's.
    fn addresses(&self) -> io::Result<(SocketAddr, SocketAddr)>;
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write(&self, buf: &[u8]) -> io::Result<usize>;
    fn flush(&self) -> io::Result<()>;
}

impl ControlStream for TcpStream {
    fn prepare(&self) {
        let _ = self.set_nonblocking(false);
        let _ = self.set_read_timeout(Some(POLL));
        let _ = self.set_write_timeout(Some(Duration::from_secs(10)));
        let _ = self.set_nodelay(true);
    }

    fn addresses(&self) -> io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.local_addr()?, self.peer_addr()?))
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut &*self, buf)
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        Write::write(&mut &*self, buf)
    }

    fn flush(&self) -> io::Result<()> {
        Write::flush(&mut &*self)
    }
}

impl<S: ControlStream + ?Sized> ControlStream for &S {
    fn prepare(&self) {
        (**self).prepare()
    }

    fn addresses(&self) -> io::Result<(SocketAddr, SocketAddr)> {
        (**self).addresses()
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (**self).read(buf)
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        (**self).write(buf)
    }

    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }
}

/// A [`ControlStream`] as `std::io::Write`, for the frame writer.
struct Writer<'a, S: ControlStream>(&'a S);

impl<S: ControlStream> Write for Writer<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The error a read ends with when the agent is told to stop. Its own type, not
/// `ErrorKind::Interrupted`: readers (`read_exact` among them) retry an interrupted read,
/// and the session would never see that it is to stop.
#[derive(Debug)]
struct Stopping;

impl std::fmt::Display for Stopping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the agent is stopping")
    }
}

impl std::error::Error for Stopping {}

fn is_stopping(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Stopping>())
}

/// Reads that wait at most until `deadline` and give up at once when `stop` is set,
/// without losing a partly read frame to a timeout.
struct PatientReader<'a, S: ControlStream> {
    stream: &'a S,
    stop: &'a AtomicBool,
    deadline: Instant,
}

impl<S: ControlStream> Read for PatientReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.stop.load(Ordering::Relaxed) {
                        return Err(io::Error::other(Stopping));
                    }
                    if Instant::now() >= self.deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the controller went quiet",
                        ));
                    }
                }
                other => return other,
            }
        }
    }
}

fn read_message<S: ControlStream>(
    stream: &S,
    stop: &AtomicBool,
    wait: Duration,
) -> Result<ControllerMessage, FrameError> {
    let mut reader = PatientReader {
        stream,
        stop,
        deadline: Instant::now() + wait,
    };
    read_frame(&mut reader)
}

/// One controller, from Hello to its end. Whatever happens, no phase outlives it.
pub fn session<S: ControlStream, P: Phases>(
    stream: S,
    token: &Token,
    phases: &mut P,
    options: &AgentOptions,
    stop: &AtomicBool,
) -> SessionEnd {
    stream.prepare();
    let mut running: Option<u64> = None;
    let end = match authenticate(&stream, token, phases, options, stop) {
        Ok(()) => requests(&stream, phases, options, stop, &mut running),
        Err(end) => end,
    };
    if running.is_some() {
        phases.abort();
    }
    end
}

type Reply<P> = AgentMessage<<P as Phases>::Report>;

fn send<P: Phases>(stream: &impl ControlStream, message: &Reply<P>) -> io::Result<()> {
    write_frame(&mut Writer(stream), message)
}

fn authenticate<P: Phases>(
    stream: &impl ControlStream,
    token: &Token,
    phases: &P,
    options: &AgentOptions,
    stop: &AtomicBool,
) -> Result<(), SessionEnd> {
    let refused = |why: String| SessionEnd::Refused(why);
    let ours = Challenge::fresh().map_err(|e| refused(format!("{e:#}")))?;
    send::<P>(
        stream,
        &AgentMessage::Hello {
            protocol: PROTOCOL_VERSION,
            agent: format!("netcopy {}", env!("CARGO_PKG_VERSION")),
            challenge: ours.to_hex(),
        },
    )
    .map_err(|e| refused(format!("sending hello: {e}")))?;
    let fail = |code: ErrorCode, message: String| {
        let _ = send::<P>(
            stream,
            &AgentMessage::Error {
                code,
                message: message.clone(),
            },
        );
        SessionEnd::Refused(message)
    };
    let (protocol, theirs, proof) = match read_message(stream, stop, options.auth_timeout) {
        Ok(ControllerMessage::Auth {
            protocol,
            challenge,
            proof,
        }) => (protocol, challenge, proof),
        Ok(other) => {
            return Err(fail(
                ErrorCode::BadRequest,
                format!("expected auth, got {}", message_name(&other)),
            ))
        }
        Err(FrameError::Io(e)) if is_stopping(&e) => return Err(SessionEnd::Stopped),
        Err(e) => return Err(fail(ErrorCode::BadRequest, e.to_string())),
    };
    if protocol != PROTOCOL_VERSION {
        return Err(fail(
            ErrorCode::Version,
            format!("this agent speaks protocol {PROTOCOL_VERSION}, the controller {protocol}"),
        ));
    }
    let Some(theirs) = Challenge::from_hex(&theirs) else {
        return Err(fail(
            ErrorCode::Auth,
            "the controller's challenge is malformed".into(),
        ));
    };
    if !token.check(Role::Controller, &ours, &theirs, &proof) {
        return Err(fail(
            ErrorCode::Auth,
            "the controller's proof does not check: the token files differ".into(),
        ));
    }
    send::<P>(
        stream,
        &AgentMessage::Welcome {
            proof: token.prove(Role::Agent, &ours, &theirs),
            host: phases.host(),
        },
    )
    .map_err(|e| SessionEnd::Lost(format!("sending welcome: {e}")))
}

fn message_name(m: &ControllerMessage) -> &'static str {
    match m {
        ControllerMessage::Auth { .. } => "auth",
        ControllerMessage::StartPhase(_) => "start_phase",
        ControllerMessage::EndPhase { .. } => "end_phase",
        ControllerMessage::Bye => "bye",
    }
}

fn requests<P: Phases>(
    stream: &impl ControlStream,
    phases: &mut P,
    options: &AgentOptions,
    stop: &AtomicBool,
    running: &mut Option<u64>,
) -> SessionEnd {
    let Ok((local, peer)) = stream.addresses() else {
        return SessionEnd::Lost("the control connection has no addresses".into());
    };
    let mut next_phase = 1u64;
    loop {
        let message = match read_message(stream, stop, options.idle_timeout) {
            Ok(m) => m,
            Err(FrameError::Closed) => {
                return SessionEnd::Lost("the controller disconnected".into())
            }
            Err(FrameError::Io(e)) if is_stopping(&e) => return SessionEnd::Stopped,
            Err(FrameError::Io(e)) => return SessionEnd::Lost(e.to_string()),
            Err(e @ FrameError::BadLength(_)) => {
                // The frame boundary is lost: nothing after this can be read safely.
                let _ = send::<P>(stream, &error(ErrorCode::BadRequest, e.to_string()));
                return SessionEnd::Lost(e.to_string());
            }
            Err(e @ FrameError::BadBody(_)) => {
                if send::<P>(stream, &error(ErrorCode::BadRequest, e.to_string())).is_err() {
                    return SessionEnd::Lost("the controller disconnected".into());
                }
                continue;
            }
        };
        let reply: Reply<P> = match message {
            ControllerMessage::Bye => {
                let _ = send::<P>(stream, &AgentMessage::Bye);
                return SessionEnd::Bye;
            }
            ControllerMessage::Auth { .. } => {
                error(ErrorCode::BadRequest, "already authenticated".into())
            }
            ControllerMessage::StartPhase(request) => match running {
                Some(phase) => error(
                    ErrorCode::PhaseRunning,
                    format!("phase {phase} is running; end it first"),
                ),
                None => match phases.host().runs(request.mode) {
                    Err(why) => error(
                        ErrorCode::Unsupported,
                        format!(
                            "{} is not supported by this agent's kernel: {why}",
                            request.mode
                        ),
                    ),
                    Ok(()) => match phases.start(&request, local.ip(), peer.ip()) {
                        Ok(data_addr) => {
                            let phase = next_phase;
                            next_phase += 1;
                            *running = Some(phase);
                            AgentMessage::PhaseStarted { phase, data_addr }
                        }
                        Err(e) => error(ErrorCode::Failed, format!("{e:#}")),
                    },
                },
            },
            ControllerMessage::EndPhase { phase } => match *running {
                Some(p) if p == phase => {
                    *running = None;
                    match phases.end() {
                        Ok(report) => AgentMessage::PhaseReport { phase, report },
                        Err(e) => error(ErrorCode::Failed, format!("{e:#}")),
                    }
                }
                _ => error(ErrorCode::NoPhase, format!("phase {phase} is not running")),
            },
        };
        if let Err(e) = send::<P>(stream, &reply) {
            return SessionEnd::Lost(format!("sending a reply: {e}"));
        }
    }
}

fn error<R>(code: ErrorCode, message: String) -> AgentMessage<R> {
    AgentMessage::Error { code, message }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A controller that has connected and says nothing: every read times out.
    struct QuietController {
        reads: Cell<u32>,
    }

    impl ControlStream for QuietController {
        fn prepare(&self) {}
        fn addresses(&self) -> io::Result<(SocketAddr, SocketAddr)> {
            Ok((
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ))
        }
        fn read(&self, _buf: &mut [u8]) -> io::Result<usize> {
            self.reads.set(self.reads.get() + 1);
            // Without the fix the session read forever; fail instead of hanging.
            assert!(self.reads.get() < 1000, "still reading after the stop");
            Err(io::Error::new(io::ErrorKind::WouldBlock, "quiet"))
        }
        fn write(&self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    struct NoPhases;

    impl Phases for NoPhases {
        type Report = ();
        fn host(&self) -> HostInfo {
            HostInfo {
                hostname: "test".into(),
                kernel: "0".into(),
                plan: serde_json::Value::Null,
                modes: Vec::new(),
            }
        }
        fn start(&mut self, _: &PhaseRequest, _: IpAddr, _: IpAddr) -> Result<SocketAddr> {
            anyhow::bail!("no phases here")
        }
        fn end(&mut self) -> Result<()> {
            Ok(())
        }
        fn abort(&mut self) {}
    }

    /// Found by the agent_session fuzz target: told to stop while its controller was
    /// quiet, the agent read on forever (the stop was an `Interrupted` error, which the
    /// frame reader retries), so that it could not stop until the controller left.
    #[test]
    fn a_stop_ends_the_session_while_the_controller_is_quiet() {
        let quiet = QuietController {
            reads: Cell::new(0),
        };
        let stop = AtomicBool::new(true);
        let token = Token::new(b"a test token of enough length").unwrap();
        let options = AgentOptions::default();
        let end = session(&quiet, &token, &mut NoPhases, &options, &stop);
        assert_eq!(end, SessionEnd::Stopped);
        assert_eq!(quiet.reads.get(), 1);

        let quiet = QuietController {
            reads: Cell::new(0),
        };
        let mut running = None;
        let end = requests(&quiet, &mut NoPhases, &options, &stop, &mut running);
        assert_eq!(end, SessionEnd::Stopped);
        assert_eq!(quiet.reads.get(), 1);
    }
}
