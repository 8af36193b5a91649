//! Human sizes (`64KiB`, `8M`) and durations (`10s`, `500ms`) for the command line.
//!
//! Sizes are always binary: `K`, `KB` and `KiB` all mean 1024 bytes, `M`/`MB`/`MiB` 1024^2,
//! `G`/`GB`/`GiB` 1024^3, case-insensitive. `KB` is accepted as 1024 (not 1000) because
//! message sizes in this tool are about pages and buffers, where decimal units would only
//! produce odd sizes by accident; the formatter never prints `KB`.

use std::{fmt, time::Duration};

/// Why a size could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    /// The text was empty (or only whitespace).
    Empty,
    /// The size was zero where zero is not allowed.
    Zero,
    /// The number times its unit does not fit in 64 bits.
    Overflow(String),
    /// The text is not a number followed by an optional unit.
    Invalid(String),
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::Empty => write!(f, "empty size: expected e.g. 4096, 64K, 1MiB"),
            SizeError::Zero => write!(f, "size must be at least 1 byte"),
            SizeError::Overflow(text) => write!(f, "size {text:?} is too large"),
            SizeError::Invalid(text) => write!(
                f,
                "invalid size {text:?}: expected a whole number with an optional unit \
                 K/KB/KiB, M/MB/MiB or G/GB/GiB (all binary: 1K = 1024)"
            ),
        }
    }
}

impl std::error::Error for SizeError {}

/// Parses a size; zero is allowed. See the module documentation for the units.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(SizeError::Empty);
    }
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(SizeError::Invalid(text.to_string()));
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(SizeError::Invalid(text.to_string())),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| SizeError::Overflow(text.to_string()))?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| SizeError::Overflow(text.to_string()))
}

/// Parses a size that must be at least one byte.
pub fn parse_nonzero_size(text: &str) -> Result<u64, SizeError> {
    match parse_size(text)? {
        0 => Err(SizeError::Zero),
        n => Ok(n),
    }
}

/// clap value parser for sizes of at least one byte.
pub fn size_arg(text: &str) -> Result<u64, String> {
    parse_nonzero_size(text).map_err(|e| e.to_string())
}

/// Formats a size with the largest binary unit that divides it exactly:
/// `1048576 -> "1M"`, `65536 -> "64K"`, `4095 -> "4095"`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
    if bytes == 0 {
        return "0".to_string();
    }
    for (unit, suffix) in UNITS {
        if bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Why a duration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    Empty,
    Zero,
    Invalid(String),
    TooLong(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => write!(f, "empty duration: expected e.g. 10s, 500ms, 2m"),
            DurationError::Zero => write!(f, "duration must be longer than zero"),
            DurationError::Invalid(text) => write!(
                f,
                "invalid duration {text:?}: expected a number with unit ms, s, m or h \
                 (a plain number means seconds), e.g. 10s, 500ms, 1.5s, 2m"
            ),
            DurationError::TooLong(text) => write!(f, "duration {text:?} is too long"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses `500ms`, `10s`, `1.5s`, `2m`, `1h` or a plain number of seconds. Zero is rejected:
/// a run of no time measures nothing.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let number_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let seconds_per_unit: f64 = match unit.to_ascii_lowercase().as_str() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(DurationError::Invalid(text.to_string())),
    };
    if number.is_empty() || number.matches('.').count() > 1 || number == "." {
        return Err(DurationError::Invalid(text.to_string()));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError::Invalid(text.to_string()))?;
    let seconds = value * seconds_per_unit;
    if seconds == 0.0 {
        return Err(DurationError::Zero);
    }
    // A year is far beyond any useful run and keeps the f64 -> Duration conversion exact enough.
    if !seconds.is_finite() || seconds > 365.0 * 24.0 * 3600.0 {
        return Err(DurationError::TooLong(text.to_string()));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// clap value parser for durations.
pub fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_suffixed_sizes() {
        assert_eq!(parse_size("1"), Ok(1));
        assert_eq!(parse_size("4095"), Ok(4095));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("1KB"), Ok(1024));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("64kib"), Ok(65536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("3gib"), Ok(3 << 30));
        assert_eq!(parse_size(" 16K "), Ok(16384));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn rejects_bad_sizes_with_clear_errors() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("   "), Err(SizeError::Empty));
        assert_eq!(parse_nonzero_size("0"), Err(SizeError::Zero));
        assert_eq!(parse_nonzero_size("0K"), Err(SizeError::Zero));
        assert!(matches!(parse_size("K"), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_size("12Q"), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_size("1.5M"), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_size("-1"), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_size("1 K"), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_size("1KK"), Err(SizeError::Invalid(_))));
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_size("17179869184G"),
            Err(SizeError::Overflow(_))
        ));
        assert!(size_arg("junk").unwrap_err().contains("invalid size"));
        assert!(size_arg("0").unwrap_err().contains("at least 1 byte"));
    }

    #[test]
    fn formats_with_the_largest_exact_unit() {
        assert_eq!(format_size(1_048_576), "1M");
        assert_eq!(format_size(4095), "4095");
        assert_eq!(format_size(4096), "4K");
        assert_eq!(format_size(65537), "65537");
        assert_eq!(format_size(8 << 20), "8M");
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(0), "0");
        for size in [1u64, 1024, 4095, 65536, 1 << 20, (1 << 20) + 3, 3 << 30] {
            assert_eq!(parse_size(&format_size(size)), Ok(size));
        }
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero));
        assert!(matches!(
            parse_duration("10x"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("1.2.3s"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("-1s"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("99999999999h"),
            Err(DurationError::TooLong(_))
        ));
    }
}
