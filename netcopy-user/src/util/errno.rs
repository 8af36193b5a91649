//! Errno names, the one table of them (nix's, which follows the kernel's numbering).

use nix::errno::Errno;

/// Symbolic name of an errno, e.g. `ENOENT`; `errno N` for a number Linux does not define.
pub fn errno_name(errno: i32) -> String {
    match Errno::from_raw(errno) {
        Errno::UnknownErrno => format!("errno {errno}"),
        known => format!("{known:?}"),
    }
}

/// Describes an errno the way our users need it: name, number and what it means here.
pub fn errno_text(errno: i32) -> String {
    format!(
        "{} ({errno}): {}",
        errno_name(errno),
        std::io::Error::from_raw_os_error(errno)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_text_names_the_errno() {
        assert!(errno_text(libc::EPERM).starts_with("EPERM (1): "));
        assert!(errno_text(libc::ENOENT).contains("No such file"));
    }

    #[test]
    fn errnos_are_named_and_unknown_numbers_say_so() {
        assert_eq!(errno_name(libc::EAGAIN), "EAGAIN");
        assert_eq!(errno_name(libc::EPIPE), "EPIPE");
        assert_eq!(errno_name(libc::ENOBUFS), "ENOBUFS");
        assert_eq!(errno_name(libc::EOPNOTSUPP), "EOPNOTSUPP");
        assert_eq!(errno_name(4095), "errno 4095");
    }
}
