//! Text as XML (and HTML) character data or attribute values, one escaper for every document
//! fracture writes: the HTML report, the partition SVG, the valgrind comment of a plan.

/// `s` escaped: markup and both quotes as references; characters XML 1.0 cannot hold at all
/// (C0 controls but tab, newline and return; U+FFFE, U+FFFF) and the C1 controls become
/// U+FFFD.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(ch),
            c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_quotes_and_controls_are_escaped_and_the_rest_kept() {
        assert_eq!(
            super::escape("a<&>\"'\u{1}\u{85}\u{ffff}\t\né"),
            "a&lt;&amp;&gt;&quot;&apos;\u{fffd}\u{fffd}\u{fffd}\t\né"
        );
    }
}
