//! CPU affinity, from `util::affinity` (the sweep pins its cells with the same code).

pub(super) use crate::util::affinity::{allowed_cpus, pin_process, PinnedThread};
