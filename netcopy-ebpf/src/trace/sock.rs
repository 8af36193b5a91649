//! What a traced call's fd and control buffer tell: whether the fd is a socket, its
//! `struct sock`, the socket's MSG_ZEROCOPY numbering (`sk_zckey`), and the extended error
//! (a zero-copy completion) a recvmsg(MSG_ERRQUEUE) read.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use netcopy_common::TraceOffsets;

use super::user;
use crate::offsets::field;

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

/// The `struct file *` of a socket `fd` of the current task; None for any other fd.
#[inline(always)]
fn socket_file(fd: i32, off: &TraceOffsets) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    // SAFETY: probe reads at offsets from this kernel's BTF; a stale pointer (the table
    // being replaced concurrently) reads garbage or fails, and garbage is not S_IFSOCK
    // with any useful probability.
    unsafe {
        let task = bpf_get_current_task();
        let files = field::<u64>(task, off.task_files)?;
        let fdt = field::<u64>(files, off.files_fdt)?;
        let max_fds = field::<u32>(fdt, off.fdtable_max_fds)?;
        if fd as u32 >= max_fds {
            return None;
        }
        let table = field::<u64>(fdt, off.fdtable_fd)?;
        let file = bpf_probe_read_kernel((table + 8 * fd as u64) as *const u64).ok()?;
        let inode = field::<u64>(file, off.file_f_inode)?;
        let mode = field::<u16>(inode, off.inode_i_mode)?;
        (mode & S_IFMT == S_IFSOCK).then_some(file)
    }
}

/// True when `fd` of the current task is a socket.
#[inline(always)]
pub(super) fn is_socket(fd: i32, off: &TraceOffsets) -> bool {
    socket_file(fd, off).is_some()
}

/// The `struct sock *` of socket `fd` of the current task.
#[inline(always)]
pub(super) fn sock_of(fd: i32, off: &TraceOffsets) -> Option<u64> {
    let file = socket_file(fd, off)?;
    // SAFETY: probe reads at offsets from this kernel's BTF.
    unsafe {
        let socket = field::<u64>(file, off.file_private_data)?;
        field::<u64>(socket, off.socket_sk)
    }
}

/// `sk_zckey` of `sock`: the number its next MSG_ZEROCOPY send will get.
#[inline(always)]
pub(super) fn zckey(sock: u64, off: &TraceOffsets) -> Option<u32> {
    // SAFETY: a probe read at an offset from this kernel's BTF.
    unsafe { field::<u32>(sock, off.sock_zckey) }
}

/// `SOL_IP`/`IP_RECVERR` and `SOL_IPV6`/`IPV6_RECVERR`: the control messages that carry
/// a `struct sock_extended_err` (zero-copy completions among them).
const RECVERR_CMSGS: [(u32, u32); 2] = [(0, 11), (41, 25)];
/// Control messages looked at before giving up on finding the extended error.
const MAX_CMSGS: u32 = 3;

/// After a recvmsg(MSG_ERRQUEUE) that returned: the `struct sock_extended_err` the
/// kernel wrote into the caller's control buffer, if there is one (the first IP_RECVERR
/// or IPV6_RECVERR control message).
#[inline(always)]
pub(super) fn read_extended_err(msg: u64, off: &TraceOffsets) -> Option<[u32; 4]> {
    // msg_controllen follows msg_control (64-bit ABI): after the call it holds the
    // bytes of control messages the kernel wrote.
    // SAFETY: user memory of the current task.
    let [control, written] = unsafe { user::<[u64; 2]>(msg, off.msghdr_control) }?;
    let mut at: u64 = 0;
    let mut i = 0;
    while i < MAX_CMSGS {
        // cmsghdr (len: u64, level: i32, type: i32) and the 16-byte extended error.
        if at + 32 > written {
            return None;
        }
        // SAFETY: user memory of the current task.
        let words = unsafe { user::<[u64; 4]>(control + at, 0) }?;
        let len = words[0];
        let level = words[1] as u32;
        let kind = (words[1] >> 32) as u32;
        if len < 32 {
            return None;
        }
        if (level, kind) == RECVERR_CMSGS[0] || (level, kind) == RECVERR_CMSGS[1] {
            return Some([
                words[2] as u32,
                (words[2] >> 32) as u32,
                words[3] as u32,
                (words[3] >> 32) as u32,
            ]);
        }
        // CMSG_NXTHDR: the next header starts at the next 8-byte boundary.
        at += (len + 7) & !7;
        i += 1;
    }
    None
}
