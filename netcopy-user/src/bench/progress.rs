//! Progress lines of `netcopy bench`.

/// Progress lines go to standard error, so that `--json` output stays clean.
pub(crate) fn progress(text: &str) {
    eprintln!("bench: {text}");
}
