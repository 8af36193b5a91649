//! What a run writes from its results: the report and its tables, and the plots.

pub mod plots;
pub mod report;
