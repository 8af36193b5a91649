//! The seeds of the `trace_records` fuzz target (fuzz/seeds/trace_records), generated
//! here from the record types themselves, so that they cannot go stale silently when the
//! record changes: the test fails when a checked-in seed is not what this generator
//! writes, or its length is not made of the decoder's records. Regenerate with
//! `NETCOPY_WRITE_FUZZ_SEEDS=1 cargo test -p netcopy-user --lib fuzz_seeds`.

use std::{fs, path::PathBuf};

use netcopy_common::{
    CopySite, IoUringEvent, SiteCounter, SyscallEvent, TracedSyscall, IORING_OP_SENDMSG_ZC,
    IORING_OP_SEND_ZC, IO_URING_SEND_FLAGS_KNOWN, MSG_ZEROCOPY, TRACE_INFO_EXT_ERR,
    TRACE_INFO_MSG_FLAGS_OUT, TRACE_INFO_REQUESTED_KERNEL, TRACE_INFO_REQUESTED_PARTIAL,
    TRACE_INFO_REQUESTED_PENDING, TRACE_INFO_RETURNED_PARTIAL, TRACE_INFO_SOCK, TRACE_INFO_ZCKEY,
    TRACE_KIND_IO_URING_COMPLETE, TRACE_KIND_IO_URING_SUBMIT,
};

use super::{
    event::{SO_EE_CODE_ZEROCOPY_COPIED, SO_EE_ORIGIN_ZEROCOPY},
    render_log_bytes,
    uring::{CQE_F_MORE, CQE_F_NOTIF, NOTIF_USAGE_ZC_COPIED, SEND_ZC_REPORT_USAGE},
    RECORD_LEN,
};

/// Asks the test to (re)write the seeds instead of comparing them.
const WRITE_ENV: &str = "NETCOPY_WRITE_FUZZ_SEEDS";
/// Seeds whose length is deliberately not a whole number of records.
const TRUNCATED_PREFIX: &str = "truncated-";

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/trace_records")
}

/// A record's bytes as a call log holds them (this machine's byte order, as the eBPF
/// program writes them).
fn bytes_of<T: Copy>(record: &T) -> Vec<u8> {
    assert_eq!(std::mem::size_of::<T>(), RECORD_LEN);
    // SAFETY: SyscallEvent and IoUringEvent are repr(C) integers without padding (checked
    // in netcopy-common), so all RECORD_LEN bytes of one are initialised.
    unsafe { std::slice::from_raw_parts((record as *const T).cast::<u8>(), RECORD_LEN) }.to_vec()
}

const PID: u32 = 4242;
const SOCK: u64 = 0xffff_8881_0a2b_3c00;
const RING: u64 = 0xffff_8881_0c00_1000;

/// A call of `syscall` on fd 5 that returned `ret` after 2 us.
fn call(syscall: TracedSyscall, start_ns: u64, requested: u64, ret: i64) -> SyscallEvent {
    SyscallEvent {
        start_ns,
        end_ns: start_ns.wrapping_add(2_000),
        requested,
        ret,
        returned: ret.max(0) as u64,
        arg_ptr: 0x7ffd_1000,
        pid: PID,
        tid: PID + 1,
        syscall: syscall as u32,
        fd: 5,
        flags: libc::MSG_NOSIGNAL as u32,
        iovecs: 1,
        messages: 1,
        ..SyscallEvent::default()
    }
}

/// `calls` copies of `bytes` at `site`, inside the call.
fn copied(mut e: SyscallEvent, site: CopySite, calls: u64, bytes: u64) -> SyscallEvent {
    let index = site.trace_index().expect("a site a call carries");
    e.copies[index] = SiteCounter { calls, bytes };
    e
}

/// A MSG_ZEROCOPY sendmsg of `bytes` that took the socket's numbers `before..after`.
fn zerocopy_send(start_ns: u64, bytes: u64, before: u32, after: u32) -> SyscallEvent {
    let mut e = call(TracedSyscall::Sendmsg, start_ns, bytes, bytes as i64);
    e.flags |= MSG_ZEROCOPY;
    e.iovecs = 9;
    e.info = TRACE_INFO_REQUESTED_KERNEL | TRACE_INFO_ZCKEY | TRACE_INFO_SOCK;
    e.sock = SOCK;
    e.zckey = [before, after];
    copied(e, CopySite::ZeroCopyAttach, 1, bytes)
}

/// A recvmsg(MSG_ERRQUEUE) that read the completion of sends `first..=last`.
fn completion(start_ns: u64, first: u32, last: u32, was_copied: bool) -> SyscallEvent {
    let mut e = call(TracedSyscall::Recvmsg, start_ns, 0, 0);
    e.flags = libc::MSG_ERRQUEUE as u32;
    e.info = TRACE_INFO_EXT_ERR | TRACE_INFO_SOCK | TRACE_INFO_MSG_FLAGS_OUT;
    e.msg_flags_out = libc::MSG_ERRQUEUE as u32;
    e.sock = SOCK;
    let code = if was_copied {
        SO_EE_CODE_ZEROCOPY_COPIED
    } else {
        0
    };
    e.ext_err = [
        0,
        u32::from(SO_EE_ORIGIN_ZEROCOPY) | u32::from(code) << 16,
        first,
        last,
    ];
    e
}

/// An io_uring event of request `request` (an identity) on the traced ring.
fn uring(kind: u32, time_ns: u64, request: u64, user_data: u64) -> IoUringEvent {
    IoUringEvent {
        time_ns,
        ring: RING,
        request,
        user_data,
        pid: PID,
        tid: PID + 2,
        kind,
        ..IoUringEvent::default()
    }
}

fn submit(time_ns: u64, request: u64, user_data: u64, opcode: u32) -> IoUringEvent {
    let mut e = uring(TRACE_KIND_IO_URING_SUBMIT, time_ns, request, user_data);
    e.opcode = opcode;
    if opcode == IORING_OP_SEND_ZC || opcode == IORING_OP_SENDMSG_ZC {
        e.send_flags = SEND_ZC_REPORT_USAGE | IO_URING_SEND_FLAGS_KNOWN;
    }
    e
}

fn complete(time_ns: u64, request: u64, user_data: u64, res: i64, cflags: u32) -> IoUringEvent {
    let mut e = uring(TRACE_KIND_IO_URING_COMPLETE, time_ns, request, user_data);
    e.res = res;
    e.cflags = cflags;
    e
}

/// One seed and what the decoder must make of it.
struct Seed {
    name: &'static str,
    bytes: Vec<u8>,
    calls: usize,
    uring: usize,
    malformed: u64,
}

fn seed(name: &'static str, records: &[Vec<u8>], calls: usize, uring: usize) -> Seed {
    Seed {
        name,
        bytes: records.concat(),
        calls,
        uring,
        malformed: 0,
    }
}

/// Every seed, deterministically.
fn seeds() -> Vec<Seed> {
    const K64: u64 = 64 << 10;
    let t = 1_000_000_000u64;
    let socket_calls = [
        // A copying sendmsg of a header and 8 fields, its request read in the kernel.
        {
            let mut e = call(TracedSyscall::Sendmsg, t, K64 + 16, (K64 + 16) as i64);
            e.iovecs = 9;
            e.info = TRACE_INFO_REQUESTED_KERNEL;
            bytes_of(&copied(e, CopySite::KernelSendCopy, 2, K64 + 16))
        },
        // sendto that copied nothing (it failed: EAGAIN).
        bytes_of(&call(
            TracedSyscall::Sendto,
            t + 10_000,
            K64,
            -i64::from(libc::EAGAIN),
        )),
        // recvfrom with its receive copy.
        bytes_of(&copied(
            call(TracedSyscall::Recvfrom, t + 20_000, K64, K64 as i64),
            CopySite::KernelRecvCopy,
            1,
            K64,
        )),
        // recvmsg with the msg_flags the kernel wrote back, its request a lower bound.
        {
            let mut e = call(TracedSyscall::Recvmsg, t + 30_000, 4096, 4096);
            e.iovecs = 70;
            e.msg_flags_out = libc::MSG_TRUNC as u32;
            e.info = TRACE_INFO_MSG_FLAGS_OUT | TRACE_INFO_REQUESTED_PARTIAL;
            bytes_of(&copied(e, CopySite::KernelRecvCopy, 1, 4096))
        },
        // sendmmsg of 20 messages (more than the program sums) and recvmmsg of 4.
        {
            let mut e = call(TracedSyscall::Sendmmsg, t + 40_000, 16 * 1000, 20);
            e.returned = 16 * 1000;
            e.messages = 20;
            e.iovecs = 16;
            e.info = TRACE_INFO_REQUESTED_PARTIAL | TRACE_INFO_RETURNED_PARTIAL;
            bytes_of(&copied(e, CopySite::KernelSendCopy, 20, 20 * 1000))
        },
        {
            let mut e = call(TracedSyscall::Recvmmsg, t + 50_000, 4 * 1000, 4);
            e.returned = 4 * 1000;
            e.messages = 4;
            e.iovecs = 4;
            bytes_of(&copied(e, CopySite::KernelRecvCopy, 4, 4 * 1000))
        },
    ];
    let read_write = [
        bytes_of(&copied(
            call(TracedSyscall::Write, t, 4096, 4096),
            CopySite::KernelSendCopy,
            1,
            4096,
        )),
        bytes_of(&copied(
            call(TracedSyscall::Read, t + 10_000, 4096, 4096),
            CopySite::KernelRecvCopy,
            1,
            4096,
        )),
        {
            let mut e = call(TracedSyscall::Writev, t + 20_000, 3 * 512, 3 * 512);
            e.iovecs = 3;
            bytes_of(&copied(e, CopySite::KernelSendCopy, 1, 3 * 512))
        },
        {
            let mut e = call(TracedSyscall::Readv, t + 30_000, 2 * 512, 0);
            e.iovecs = 2;
            // The peer closed: nothing read, nothing copied.
            bytes_of(&e)
        },
    ];
    let zerocopy = [
        // Three sends numbered 0..3: 0 and 1 completed copied, 2 not copied.
        bytes_of(&zerocopy_send(t, K64, 0, 1)),
        bytes_of(&zerocopy_send(t + 10_000, K64, 1, 2)),
        bytes_of(&completion(t + 20_000, 0, 1, true)),
        bytes_of(&zerocopy_send(t + 30_000, K64, 2, 3)),
        bytes_of(&completion(t + 40_000, 2, 2, false)),
        // A completion of sends before the trace started.
        bytes_of(&completion(t + 50_000, 7, 9, true)),
    ];
    let io_uring = [
        // SEND_ZC with usage reports: result, then a notification flagged copied.
        bytes_of(&submit(t, 0xa000, 1, IORING_OP_SEND_ZC)),
        bytes_of(&complete(t + 5_000, 0xa000, 1, K64 as i64, CQE_F_MORE)),
        bytes_of(&complete(
            t + 9_000,
            0xa000,
            1,
            i64::from(NOTIF_USAGE_ZC_COPIED),
            CQE_F_NOTIF,
        )),
        // SENDMSG_ZC whose notification says the pages were not copied.
        bytes_of(&submit(t + 10_000, 0xb000, 2, IORING_OP_SENDMSG_ZC)),
        bytes_of(&complete(t + 15_000, 0xb000, 2, K64 as i64, CQE_F_MORE)),
        bytes_of(&complete(t + 19_000, 0xb000, 2, 0, CQE_F_NOTIF)),
        // A SENDMSG without zero-copy that failed (no notification follows).
        bytes_of(&submit(t + 20_000, 0xc000, 3, 9)),
        bytes_of(&complete(t + 25_000, 0xc000, 3, -i64::from(libc::EPIPE), 0)),
    ];
    let huge = {
        let mut e = call(TracedSyscall::Sendmsg, u64::MAX - 1, u64::MAX, i64::MIN);
        e.end_ns = 0; // ends before it starts
        e.returned = u64::MAX;
        e.iovecs = u32::MAX;
        e.messages = u32::MAX;
        e.flags = u32::MAX;
        e.info = !TRACE_INFO_REQUESTED_PENDING; // every bit a record may carry
        e.zckey = [u32::MAX - 1, 1]; // the numbering wrapped
        e.ext_err = [u32::MAX, u32::MAX, 10, 2]; // a range that ends before it starts
        for counter in &mut e.copies {
            *counter = SiteCounter {
                calls: u64::MAX,
                bytes: u64::MAX,
            };
        }
        e
    };
    let mut huge_uring = complete(u64::MAX, u64::MAX, u64::MAX, i64::MIN, u32::MAX);
    huge_uring.send_flags = u32::MAX;
    huge_uring.opcode = u32::MAX;
    let unknown = |kind: u32| {
        let mut e = call(TracedSyscall::Sendto, t, 1, 1);
        e.syscall = kind;
        bytes_of(&e)
    };
    let whole = bytes_of(&copied(
        call(TracedSyscall::Sendto, t, 100, 100),
        CopySite::KernelSendCopy,
        1,
        100,
    ));
    let mut truncated = whole.clone();
    truncated.extend_from_slice(&whole[..RECORD_LEN / 2]);
    vec![
        seed("socket-calls", &socket_calls, socket_calls.len(), 0),
        seed("read-write", &read_write, read_write.len(), 0),
        seed("zerocopy-sendmsg-completions", &zerocopy, zerocopy.len(), 0),
        seed("io-uring-send-zc", &io_uring, 0, io_uring.len()),
        seed(
            // The corrupted record the fuzzer found (absurd counts, ret = i64::MIN).
            "regress-summary-overflow",
            &[bytes_of(&huge), bytes_of(&huge_uring)],
            1,
            1,
        ),
        Seed {
            malformed: 3,
            ..seed(
                "wrong-kind",
                &[
                    unknown(TracedSyscall::ALL.len() as u32),
                    unknown(TRACE_KIND_IO_URING_COMPLETE + 1),
                    unknown(u32::MAX),
                    whole.clone(),
                ],
                1,
                0,
            )
        },
        // The timeouts the fuzzer found: sk_zckey went backwards across a send, and a send
        // numbered by counting claimed 791,621,423 messages.
        seed(
            "regress-zckey-backwards",
            &[
                bytes_of(&zerocopy_send(t, K64, 5, 4)),
                bytes_of(&completion(t + 10_000, 5, 5, true)),
                {
                    let mut e = zerocopy_send(t + 20_000, K64, 0, 0);
                    e.info &= !TRACE_INFO_ZCKEY;
                    e.messages = 791_621_423;
                    bytes_of(&e)
                },
            ],
            3,
            0,
        ),
        // The crash the fuzzer found: a completion whose result is i32::MIN, which has
        // no errno to negate into.
        seed(
            "regress-uring-res-min",
            &[
                bytes_of(&submit(t, 0xd000, 4, IORING_OP_SENDMSG_ZC)),
                bytes_of(&complete(t + 5_000, 0xd000, 4, i64::from(i32::MIN), 0)),
            ],
            0,
            2,
        ),
        Seed {
            name: "truncated-one-and-a-half",
            bytes: truncated,
            calls: 1,
            uring: 0,
            malformed: 0,
        },
    ]
}

#[test]
fn trace_record_seeds_are_what_the_generator_writes() {
    let dir = seed_dir();
    let seeds = seeds();
    if std::env::var_os(WRITE_ENV).is_some() {
        for entry in fs::read_dir(&dir).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }
        for s in &seeds {
            fs::write(dir.join(s.name), &s.bytes).unwrap();
        }
    }
    let regenerate =
        format!("regenerate with {WRITE_ENV}=1 cargo test -p netcopy-user --lib fuzz_seeds");
    let mut on_disk: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut names: Vec<String> = seeds.iter().map(|s| s.name.to_string()).collect();
    names.sort();
    assert_eq!(
        on_disk,
        names,
        "{}: not the generated seeds; {regenerate}",
        dir.display()
    );
    for name in &on_disk {
        let len = fs::metadata(dir.join(name)).unwrap().len() as usize;
        assert!(
            len >= RECORD_LEN,
            "{name} is {len} bytes, under one record; {regenerate}"
        );
        assert_eq!(
            name.starts_with(TRUNCATED_PREFIX),
            !len.is_multiple_of(RECORD_LEN),
            "{name} is {len} bytes; the decoder's records are {RECORD_LEN} bytes; {regenerate}"
        );
    }
    for s in &seeds {
        assert!(
            fs::read(dir.join(s.name)).unwrap() == s.bytes,
            "{} differs from what the generator writes; {regenerate}",
            s.name
        );
    }
}

#[test]
fn trace_record_seeds_decode_as_intended() {
    for s in seeds() {
        let (output, malformed, [jsonl, ..]) = render_log_bytes(&s.bytes).unwrap();
        assert_eq!(output.events.len(), s.calls, "{}", s.name);
        assert_eq!(output.io_uring.len(), s.uring, "{}", s.name);
        assert_eq!(malformed, s.malformed, "{}", s.name);
        assert_eq!(jsonl.lines().count(), s.calls + s.uring + 1, "{}", s.name);
    }
    let seeds = seeds();
    let find = |name: &str| seeds.iter().find(|s| s.name == name).unwrap();

    let (output, ..) = render_log_bytes(&find("zerocopy-sendmsg-completions").bytes).unwrap();
    let totals = output.zerocopy.totals();
    assert_eq!(
        (
            totals.sends,
            totals.completed_copied,
            totals.completed_not_copied
        ),
        (3, 2, 1)
    );
    assert_eq!((totals.notifications, totals.notifications_copied), (3, 2));
    assert_eq!(totals.unmatched_numbers, 3);

    let (output, ..) = render_log_bytes(&find("io-uring-send-zc").bytes).unwrap();
    let totals = output.zerocopy.uring_totals();
    assert_eq!((totals.sends, totals.copied, totals.not_copied), (2, 1, 1));
    assert_eq!(totals.unmatched_notifications, 0);

    let (output, ..) = render_log_bytes(&find("socket-calls").bytes).unwrap();
    let copies: u64 = output.events.iter().map(|r| r.copy_events()).sum();
    assert_eq!(copies, 2 + 1 + 1 + 20 + 4);
    let (output, ..) = render_log_bytes(&find("read-write").bytes).unwrap();
    let copied: u64 = output.events.iter().map(|r| r.copied_bytes()).sum();
    assert_eq!(copied, 4096 + 4096 + 3 * 512);
}
