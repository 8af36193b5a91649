//! What the trace programs need to know about the running kernel, found at run time:
//! whether the `syscalls/sys_enter_*` and `sys_exit_*` records in tracefs have the layout
//! the programs read as constants ([`TracedSyscall::arg_offsets`]), the kernel struct
//! offsets that lead from the current task to an fd's inode (BTF), and the user ABI
//! layouts of `struct msghdr`, `struct mmsghdr` and `struct iovec` (from the libc crate's
//! definitions for this target: they are part of the system call ABI).

use std::path::Path;

use anyhow::{anyhow, Result};
use netcopy_common::{
    TraceOffsets, TracedSyscall, OFFSET_UNKNOWN, SYSCALL_EXIT_RET_OFFSET,
    TP_URING_COMPLETE_CFLAGS_OFFSET, TP_URING_COMPLETE_RES_OFFSET, TP_URING_CREATE_CTX_OFFSET,
    TP_URING_CTX_OFFSET, TP_URING_REQ_OFFSET, TP_URING_SUBMIT_OPCODE_OFFSET,
    TP_URING_USER_DATA_OFFSET,
};

use crate::kernel::{btf::KernelBtf, plan::Layout, tracefs::TracepointFormat};

/// Field names of one call's `sys_enter_*` record, in `SyscallArgOffsets` order.
struct EnterFields {
    fd: &'static str,
    ptr: &'static str,
    len: Option<&'static str>,
    flags: Option<&'static str>,
}

fn enter_fields(syscall: TracedSyscall) -> EnterFields {
    let f = |fd, ptr, len, flags| EnterFields {
        fd,
        ptr,
        len,
        flags,
    };
    match syscall {
        TracedSyscall::Sendto => f("fd", "buff", Some("len"), Some("flags")),
        TracedSyscall::Sendmsg => f("fd", "msg", None, Some("flags")),
        TracedSyscall::Sendmmsg => f("fd", "mmsg", Some("vlen"), Some("flags")),
        TracedSyscall::Recvfrom => f("fd", "ubuf", Some("size"), Some("flags")),
        TracedSyscall::Recvmsg => f("fd", "msg", None, Some("flags")),
        TracedSyscall::Recvmmsg => f("fd", "mmsg", Some("vlen"), Some("flags")),
        TracedSyscall::Write | TracedSyscall::Read => f("fd", "buf", Some("count"), None),
        TracedSyscall::Writev | TracedSyscall::Readv => f("fd", "vec", Some("vlen"), None),
    }
}

/// The socket calls, recorded by the `trace-socket` event.
const SOCKET_CALLS: [TracedSyscall; 6] = [
    TracedSyscall::Sendto,
    TracedSyscall::Sendmsg,
    TracedSyscall::Sendmmsg,
    TracedSyscall::Recvfrom,
    TracedSyscall::Recvmsg,
    TracedSyscall::Recvmmsg,
];

/// The generic calls recorded only on sockets, by the `trace-rw` event.
const READ_WRITE_CALLS: [TracedSyscall; 4] = [
    TracedSyscall::Write,
    TracedSyscall::Read,
    TracedSyscall::Writev,
    TracedSyscall::Readv,
];

/// Offsets for the trace programs, and for each layout that could not be found, why.
#[derive(Clone, Debug)]
pub struct TraceLayout {
    pub offsets: TraceOffsets,
    pub missing: Vec<(Layout, String)>,
}

impl TraceLayout {
    /// Reads what it can; never fails as a whole (a missing piece disables the events
    /// that need it, with the reason).
    pub fn discover(tracefs: &Path, btf: Option<&KernelBtf>) -> TraceLayout {
        let mut offsets = TraceOffsets::default();
        let mut missing = Vec::new();
        for (layout, calls) in [
            (Layout::TraceSyscallArgs, &SOCKET_CALLS[..]),
            (Layout::TraceReadWriteArgs, &READ_WRITE_CALLS[..]),
        ] {
            let result = calls.iter().try_for_each(|&call| {
                check_enter_record(tracefs, call)?;
                check_exit_record(tracefs, call)
            });
            if let Err(e) = result {
                missing.push((layout, format!("{e:#}")));
            }
        }
        for (layout, records) in URING_RECORDS {
            if let Err(e) = check_uring_records(tracefs, records) {
                missing.push((*layout, format!("{e:#}")));
            }
        }
        match btf {
            Some(btf) => {
                if let Err(e) = socket_fd_offsets(btf, &mut offsets) {
                    missing.push((Layout::TraceSocketFd, format!("{e:#}")));
                }
                // Best effort, each on its own: without them zero-copy sends are numbered
                // by counting, and io_uring's usage-report flag is unknown.
                zerocopy_offsets(btf, &mut offsets);
            }
            None => missing.push((
                Layout::TraceSocketFd,
                "kernel BTF is unavailable: cannot tell socket fds from others".to_string(),
            )),
        }
        user_abi_offsets(&mut offsets);
        TraceLayout { offsets, missing }
    }
}

/// Checks that `sys_enter_<call>` keeps each argument where the programs read it.
fn check_enter_record(tracefs: &Path, call: TracedSyscall) -> Result<()> {
    let name = format!("sys_enter_{}", call.name());
    let format = TracepointFormat::read(tracefs, "syscalls", &name)?;
    let fields = enter_fields(call);
    let expected = call.arg_offsets();
    for (field, at) in [
        (Some(fields.fd), expected.fd),
        (Some(fields.ptr), expected.ptr),
        (fields.len, expected.len),
        (fields.flags, expected.flags),
    ] {
        let Some(field) = field else { continue };
        // Every syscall tracepoint argument is stored as 8 bytes, whatever its C type.
        let found = format.offset(field, 8)?;
        if at == OFFSET_UNKNOWN || found != at {
            return Err(anyhow!(
                "syscalls/{name} keeps `{field}` at offset {found}; netcopy's trace programs \
                 read it at {at} (the layout of every kernel it was built for)"
            ));
        }
    }
    Ok(())
}

/// Checks that `sys_exit_<call>` keeps `ret` where the exit programs read it.
fn check_exit_record(tracefs: &Path, call: TracedSyscall) -> Result<()> {
    let name = format!("sys_exit_{}", call.name());
    let found = TracepointFormat::read(tracefs, "syscalls", &name)?.offset("ret", 8)?;
    if found != SYSCALL_EXIT_RET_OFFSET {
        return Err(anyhow!(
            "syscalls/{name} keeps `ret` at offset {found}; netcopy's trace programs read it \
             at {SYSCALL_EXIT_RET_OFFSET}"
        ));
    }
    Ok(())
}

fn socket_fd_offsets(btf: &KernelBtf, o: &mut TraceOffsets) -> Result<()> {
    o.task_files = btf.member_offset("task_struct", "files")?;
    o.files_fdt = btf.member_offset("files_struct", "fdt")?;
    o.fdtable_fd = btf.member_offset("fdtable", "fd")?;
    o.fdtable_max_fds = btf.member_offset("fdtable", "max_fds")?;
    o.file_f_inode = btf.member_offset("file", "f_inode")?;
    o.inode_i_mode = btf.member_offset("inode", "i_mode")?;
    Ok(())
}

/// One io_uring record's name and the fields the programs read in it: (name, size,
/// offset).
type UringRecord = (&'static str, &'static [(&'static str, u32, u32)]);

/// The fields of both submit records: the same at the same offsets (6.1's
/// `io_uring_submit_sqe` differs only after them, in `force_nonblock`).
const URING_SUBMIT_FIELDS: &[(&str, u32, u32)] = &[
    ("ctx", 8, TP_URING_CTX_OFFSET),
    ("req", 8, TP_URING_REQ_OFFSET),
    ("user_data", 8, TP_URING_USER_DATA_OFFSET),
    ("opcode", 1, TP_URING_SUBMIT_OPCODE_OFFSET),
];

/// The io_uring records of each layout fact: the completion and creation records every
/// strategy reads, and each name the submit record has had.
const URING_RECORDS: &[(Layout, &[UringRecord])] = &[
    (
        Layout::TraceIoUringFields,
        &[
            (
                "io_uring_complete",
                &[
                    ("ctx", 8, TP_URING_CTX_OFFSET),
                    ("req", 8, TP_URING_REQ_OFFSET),
                    ("user_data", 8, TP_URING_USER_DATA_OFFSET),
                    ("res", 4, TP_URING_COMPLETE_RES_OFFSET),
                    ("cflags", 4, TP_URING_COMPLETE_CFLAGS_OFFSET),
                ],
            ),
            ("io_uring_create", &[("ctx", 8, TP_URING_CREATE_CTX_OFFSET)]),
        ],
    ),
    (
        Layout::TraceIoUringSubmitReq,
        &[("io_uring_submit_req", URING_SUBMIT_FIELDS)],
    ),
    (
        Layout::TraceIoUringSubmitSqe,
        &[("io_uring_submit_sqe", URING_SUBMIT_FIELDS)],
    ),
];

/// Checks that the io_uring `records` keep each field the programs read where they read it.
fn check_uring_records(tracefs: &Path, records: &[UringRecord]) -> Result<()> {
    for &(name, fields) in records {
        let format = TracepointFormat::read(tracefs, "io_uring", name)?;
        for &(field, size, at) in fields {
            let found = format.offset(field, size)?;
            if found != at {
                return Err(anyhow!(
                    "io_uring/{name} keeps `{field}` at offset {found}; netcopy's trace \
                     programs read it at {at}"
                ));
            }
        }
    }
    Ok(())
}

/// The kernel's MSG_ZEROCOPY numbering (fd -> file -> socket -> sock -> sk_zckey) and the
/// send flags of an io_uring zero-copy send (`struct io_sr_msg`, the command area at the
/// start of `struct io_kiocb`); each left unknown when this kernel's BTF lacks it.
fn zerocopy_offsets(btf: &KernelBtf, o: &mut TraceOffsets) {
    if let (Ok(private), Ok(sk), Ok(zckey)) = (
        btf.member_offset("file", "private_data"),
        btf.member_offset("socket", "sk"),
        btf.member_offset("sock", "sk_zckey"),
    ) {
        o.file_private_data = private;
        o.socket_sk = sk;
        o.sock_zckey = zckey;
    }
    if let (Ok(cmd), Ok(flags)) = (
        btf.member_offset("io_kiocb", "cmd"),
        btf.member_offset("io_sr_msg", "flags"),
    ) {
        o.uring_req_send_flags = cmd + flags;
    }
}

fn user_abi_offsets(o: &mut TraceOffsets) {
    use std::mem::{offset_of, size_of};
    // Offsets of these structs are at most a few dozen bytes: the casts cannot truncate.
    o.msghdr_iov = offset_of!(libc::msghdr, msg_iov) as u32;
    o.msghdr_iovlen = offset_of!(libc::msghdr, msg_iovlen) as u32;
    o.msghdr_flags = offset_of!(libc::msghdr, msg_flags) as u32;
    o.msghdr_control = offset_of!(libc::msghdr, msg_control) as u32;
    o.mmsghdr_len = offset_of!(libc::mmsghdr, msg_len) as u32;
    o.mmsghdr_size = size_of::<libc::mmsghdr>() as u32;
}

// The trace program reads iovec arrays as u64 pairs (see `IOVEC_SIZE`), msg_control and
// msg_controllen with one read, and a cmsghdr as (u64 len, i32 level, i32 type).
const _: () = assert!(
    std::mem::offset_of!(libc::msghdr, msg_controllen)
        == std::mem::offset_of!(libc::msghdr, msg_control) + 8
        && std::mem::size_of::<libc::cmsghdr>() == 16
);
const _: () = assert!(
    std::mem::size_of::<libc::iovec>() == netcopy_common::IOVEC_SIZE as usize
        && std::mem::offset_of!(libc::iovec, iov_len) == 8
);

#[cfg(test)]
mod tests {
    use super::*;

    fn write_format(dir: &Path, name: &str, fields: &[(&str, u32)]) {
        let d = dir.join("events/syscalls").join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut text = format!("name: {name}\nID: 1\nformat:\n");
        text.push_str("\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n");
        text.push_str("\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n");
        for (field, offset) in fields {
            text.push_str(&format!(
                "\tfield:unsigned long {field};\toffset:{offset};\tsize:8;\tsigned:0;\n"
            ));
        }
        std::fs::write(d.join("format"), text).unwrap();
    }

    fn write_uring_format(dir: &Path, name: &str, fields: &[(&str, &str, u32, u32)]) {
        let d = dir.join("events/io_uring").join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut text = format!("name: {name}\nID: 2\nformat:\n");
        for (ty, field, offset, size) in fields {
            text.push_str(&format!(
                "\tfield:{ty} {field};\toffset:{offset};\tsize:{size};\tsigned:0;\n"
            ));
        }
        std::fs::write(d.join("format"), text).unwrap();
    }

    fn fake_tracefs(tag: &str, exit_ret_of_readv: u32) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("netcopy-trace-layout-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // As 6.18 lays them out (6.1's differ only after these fields).
        let head = [
            ("void *", "ctx", 8, 8),
            ("void *", "req", 16, 8),
            ("u64", "user_data", 24, 8),
        ];
        let mut submit = head.to_vec();
        submit.push(("u8", "opcode", 32, 1));
        write_uring_format(&dir, "io_uring_submit_req", &submit);
        let mut complete = head.to_vec();
        complete.extend([("int", "res", 32, 4), ("unsigned", "cflags", 36, 4)]);
        write_uring_format(&dir, "io_uring_complete", &complete);
        write_uring_format(
            &dir,
            "io_uring_create",
            &[("int", "fd", 8, 4), ("void *", "ctx", 16, 8)],
        );
        for call in TracedSyscall::ALL {
            // As the kernel lays them out: 8 bytes an argument, in the call's order.
            let f = enter_fields(call);
            let mut fields = vec![(f.fd, 16), (f.ptr, 24)];
            match (f.len, f.flags) {
                (Some(len), Some(flags)) => fields.extend([(len, 32), (flags, 40)]),
                (Some(len), None) => fields.push((len, 32)),
                (None, Some(flags)) => fields.push((flags, 32)),
                (None, None) => {}
            }
            write_format(&dir, &format!("sys_enter_{}", call.name()), &fields);
            let ret = if call == TracedSyscall::Readv {
                exit_ret_of_readv
            } else {
                16
            };
            write_format(&dir, &format!("sys_exit_{}", call.name()), &[("ret", ret)]);
        }
        dir
    }

    #[test]
    fn accepts_the_kernel_record_layout() {
        let dir = fake_tracefs("ok", 16);
        let layout = TraceLayout::discover(&dir, None);
        let _ = std::fs::remove_dir_all(&dir);
        // Without BTF the socket-fd check is missing, and a 6.18-shaped tracefs has the
        // submit record under its new name only.
        let missing: Vec<Layout> = layout.missing.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            missing,
            [Layout::TraceIoUringSubmitSqe, Layout::TraceSocketFd],
            "{:?}",
            layout.missing
        );
        assert!(
            layout.missing[0]
                .1
                .contains("io_uring/io_uring_submit_sqe not found"),
            "{}",
            layout.missing[0].1
        );
        assert_eq!(layout.offsets.mmsghdr_size, 64);
    }

    /// `io_uring_submit_sqe` as Linux 6.1 lays it out (its format file, field by field).
    const SUBMIT_SQE_6_1: &[(&str, &str, u32, u32)] = &[
        ("unsigned short", "common_type", 0, 2),
        ("unsigned char", "common_flags", 2, 1),
        ("unsigned char", "common_preempt_count", 3, 1),
        ("int", "common_pid", 4, 4),
        ("void *", "ctx", 8, 8),
        ("void *", "req", 16, 8),
        ("unsigned long long", "user_data", 24, 8),
        ("u8", "opcode", 32, 1),
        ("u32", "flags", 36, 4),
        ("bool", "force_nonblock", 40, 1),
        ("bool", "sq_thread", 41, 1),
        ("__data_loc char[]", "op_str", 44, 4),
    ];

    /// A tracefs as Linux 6.1 has it: `io_uring_submit_sqe`, no `io_uring_submit_req`.
    fn tracefs_of_6_1(tag: &str, submit_sqe: &[(&str, &str, u32, u32)]) -> std::path::PathBuf {
        let dir = fake_tracefs(tag, 16);
        std::fs::remove_dir_all(dir.join("events/io_uring/io_uring_submit_req")).unwrap();
        write_uring_format(&dir, "io_uring_submit_sqe", submit_sqe);
        dir
    }

    #[test]
    fn linux_6_1_submit_records_are_read_under_their_old_name() {
        let dir = tracefs_of_6_1("sqe", SUBMIT_SQE_6_1);
        let layout = TraceLayout::discover(&dir, None);
        let _ = std::fs::remove_dir_all(&dir);
        let missing: Vec<Layout> = layout.missing.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            missing,
            [Layout::TraceIoUringSubmitReq, Layout::TraceSocketFd],
            "{:?}",
            layout.missing
        );
        assert!(
            layout.missing[0]
                .1
                .contains("io_uring/io_uring_submit_req not found"),
            "{}",
            layout.missing[0].1
        );
    }

    #[test]
    fn a_6_1_submit_record_laid_out_otherwise_disables_only_its_strategy() {
        let mut moved = SUBMIT_SQE_6_1.to_vec();
        moved[7] = ("u8", "opcode", 33, 1);
        let dir = tracefs_of_6_1("sqe-moved", &moved);
        let layout = TraceLayout::discover(&dir, None);
        let _ = std::fs::remove_dir_all(&dir);
        let sqe = layout
            .missing
            .iter()
            .find(|(l, _)| *l == Layout::TraceIoUringSubmitSqe)
            .expect("the io_uring_submit_sqe strategy disabled");
        assert!(
            sqe.1
                .contains("io_uring_submit_sqe keeps `opcode` at offset 33")
                && sqe.1.contains("at 32"),
            "{}",
            sqe.1
        );
        assert!(!layout
            .missing
            .iter()
            .any(|(l, _)| *l == Layout::TraceIoUringFields));
    }

    #[test]
    fn a_record_laid_out_otherwise_disables_only_its_event() {
        let dir = fake_tracefs("ret", 24);
        let layout = TraceLayout::discover(&dir, None);
        let _ = std::fs::remove_dir_all(&dir);
        let rw = layout
            .missing
            .iter()
            .find(|(l, _)| *l == Layout::TraceReadWriteArgs)
            .expect("read/write event disabled");
        assert!(rw.1.contains("sys_exit_readv"), "{}", rw.1);
        assert!(rw.1.contains("offset 24"), "{}", rw.1);
        assert!(!layout
            .missing
            .iter()
            .any(|(l, _)| *l == Layout::TraceSyscallArgs));
    }

    /// Discovers the layout of the fake tracefs `dir` (then removes it) and returns why
    /// the socket calls cannot be traced.
    fn socket_calls_disabled(dir: &Path) -> String {
        let layout = TraceLayout::discover(dir, None);
        let _ = std::fs::remove_dir_all(dir);
        layout
            .missing
            .into_iter()
            .find(|(l, _)| *l == Layout::TraceSyscallArgs)
            .expect("socket calls disabled")
            .1
    }

    #[test]
    fn an_argument_elsewhere_disables_the_socket_calls() {
        let dir = fake_tracefs("arg", 16);
        write_format(
            &dir,
            "sys_enter_sendmsg",
            &[("fd", 16), ("msg", 24), ("flags", 40)],
        );
        let reason = socket_calls_disabled(&dir);
        assert!(
            reason.contains("sys_enter_sendmsg keeps `flags` at offset 40")
                && reason.contains("at 32"),
            "{reason}"
        );
    }

    #[test]
    fn io_uring_records_laid_out_otherwise_disable_only_the_io_uring_event() {
        let dir = fake_tracefs("uring", 16);
        write_uring_format(
            &dir,
            "io_uring_complete",
            &[
                ("void *", "ctx", 8, 8),
                ("void *", "req", 16, 8),
                ("u64", "user_data", 24, 8),
                ("int", "res", 36, 4),
                ("unsigned", "cflags", 40, 4),
            ],
        );
        let layout = TraceLayout::discover(&dir, None);
        let _ = std::fs::remove_dir_all(&dir);
        let why = layout
            .missing
            .iter()
            .find(|(l, _)| *l == Layout::TraceIoUringFields)
            .expect("io_uring event disabled");
        assert!(
            why.1.contains("io_uring_complete keeps `res` at offset 36"),
            "{}",
            why.1
        );
        assert!(!layout
            .missing
            .iter()
            .any(|(l, _)| *l == Layout::TraceSyscallArgs));
    }

    #[test]
    fn a_missing_tracepoint_is_named() {
        let dir = fake_tracefs("missing", 16);
        std::fs::remove_dir_all(dir.join("events/syscalls/sys_enter_sendmmsg")).unwrap();
        let reason = socket_calls_disabled(&dir);
        assert!(reason.contains("syscalls/sys_enter_sendmmsg"), "{reason}");
    }
}
