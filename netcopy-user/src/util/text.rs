//! Text from outside (a peer's error message, a server's reply) made safe to print.

/// `text` with every control character (ESC, CR, BEL, ...) but newline and tab written as
/// a `\u{..}` escape, so that a hostile peer's message cannot move the cursor, recolour
/// or rewrite the user's terminal. Long texts are cut at `MAX` characters.
pub fn printable(text: &str) -> String {
    const MAX: usize = 2000;
    let mut out = String::with_capacity(text.len().min(MAX));
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push_str("...");
            break;
        }
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(printable("\x1b[2Jgone\r"), "\\u{1b}[2Jgone\\u{d}");
        assert_eq!(printable("bell\x07\u{9b}"), "bell\\u{7}\\u{9b}");
        assert_eq!(printable(&"x".repeat(5000)).len(), 2003);
    }
}
