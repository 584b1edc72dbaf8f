//! How yaml.v2 (v2.2, the generation ciao vendored) chooses the style of a Go string:
//! `encode.go:stringv` quotes (double) whatever would read back as something other than a string
//! under YAML 1.1 (`resolve.go`: `""`, `y`, `on`, `~`, numbers, dates, base-60 floats), and
//! libyaml's `analyze_scalar` / `select_scalar_style` then demote plain text that is not valid
//! unquoted to single quotes, and text single quotes cannot hold to double quotes.
//! Multi-line strings take the single-quoted path (v2.3 later switched them to literal blocks).

use super::emit::is_break;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
}

/// The style yaml.v2 writes `s` in as a mapping value or sequence item.
pub(crate) fn scalar_style(s: &str) -> Style {
    let can_use_plain = !resolves_to_non_string(s) && !is_base60_float(s);
    let a = analyze(s);
    let mut style = if can_use_plain {
        Style::Plain
    } else {
        Style::DoubleQuoted
    };
    if style == Style::Plain && !a.block_plain_allowed {
        style = Style::SingleQuoted;
    }
    if style == Style::SingleQuoted && !a.single_quoted_allowed {
        style = Style::DoubleQuoted;
    }
    style
}

/// libyaml `is_printable` with unicode output on (as yaml.v2 sets it).
pub(crate) fn is_printable(c: char) -> bool {
    let v = u32::from(c);
    v == 0x0a
        || (0x20..=0x7e).contains(&v)
        || (0xa0..=0xd7ff).contains(&v)
        || ((0xe000..=0xfffd).contains(&v) && v != 0xfeff)
}

struct Analysis {
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
}

/// libyaml `yaml_emitter_analyze_scalar`, reduced to what block context needs.
fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            block_plain_allowed: true,
            single_quoted_allowed: true,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let (mut special, mut line_breaks) = (false, false);
    let (mut leading_space, mut leading_break) = (false, false);
    let (mut trailing_space, mut trailing_break) = (false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_whitespace = true;
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let followed_by_whitespace = matches!(next, None | Some(' ' | '\t'));
        let last = next.is_none();
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            line_breaks = true;
            leading_break |= i == 0;
            trailing_break |= last;
            space_break |= previous_space;
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = matches!(c, ' ' | '\t' | '\0') || is_break(c);
    }
    let mut a = Analysis {
        block_plain_allowed: true,
        single_quoted_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break || line_breaks {
        a.block_plain_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// yaml.v2 `resolve("", s)` returning anything but `!!str`.
fn resolves_to_non_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
        "-.Inf", "-.INF",
    ];
    if SPECIAL.contains(&s) {
        return true;
    }
    match s.as_bytes().first() {
        Some(b'.') => is_dot_float(s),
        Some(b'0'..=b'9' | b'+' | b'-') => {
            if is_timestamp(s) {
                return true;
            }
            let plain = s.replace('_', "");
            is_go_int(&plain) || is_yaml_float(&plain)
        }
        _ => false,
    }
}

/// Go `strconv.ParseInt(s, 0, 64)` or `ParseUint(s, 0, 64)` succeeding.
fn is_go_int(s: &str) -> bool {
    let (negative, signed, body) = match s.as_bytes().first() {
        Some(b'-') => (true, true, &s[1..]),
        Some(b'+') => (false, true, &s[1..]),
        _ => (false, false, s),
    };
    let prefixed = |p: &str| {
        body.get(..2)
            .filter(|head| body.len() >= 3 && head.eq_ignore_ascii_case(p))
            .map(|_| &body[2..])
    };
    let (radix, digits) = if let Some(rest) = prefixed("0x") {
        (16, rest)
    } else if let Some(rest) = prefixed("0b") {
        (2, rest)
    } else if let Some(rest) = prefixed("0o") {
        (8, rest)
    } else if let Some(rest) = body.strip_prefix('0') {
        (8, rest)
    } else {
        (10, body)
    };
    if body.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return false;
    }
    let Ok(magnitude) = u128::from_str_radix(if digits.is_empty() { "0" } else { digits }, radix)
    else {
        return false;
    };
    let limit = match (signed, negative) {
        (false, _) => u128::from(u64::MAX),
        (true, true) => 1 << 63,
        (true, false) => (1 << 63) - 1,
    };
    magnitude <= limit
}

/// yaml.v2's `yamlStyleFloat` regexp `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`,
/// and Go's `ParseFloat` not overflowing.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len() && s.parse::<f64>().is_ok_and(f64::is_finite)
}

/// Text starting with `.` that Go's `ParseFloat` takes: `.5`, `.5e3`.
fn is_dot_float(s: &str) -> bool {
    !s[1..].starts_with(['+', '-']) && is_yaml_float(s)
}

/// yaml.v2 `isBase60Float`: `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`.
/// MAC addresses made only of digits match, so yaml.v2 quotes them.
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    if !digit(i) {
        return false;
    }
    i += 1;
    while digit(i) || b.get(i) == Some(&b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        if !digit(i) {
            return false;
        }
        i += if b[i] <= b'5' && digit(i + 1) { 2 } else { 1 };
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while digit(i) || b.get(i) == Some(&b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// yaml.v2 `parseTimestamp`: Go `time.Parse` with `2006-1-2T15:4:5.999999999Z07:00` (also `t`),
/// `2006-1-2 15:4:5.999999999` or `2006-1-2`.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let mut p = Cursor { b, i: 5 };
    let year: u32 = b[..4].iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
    let Some(month) = p.num() else { return false };
    if !(1..=12).contains(&month) || !p.eat(b'-') {
        return false;
    }
    let Some(day) = p.num() else { return false };
    if day < 1 || day > days_in_month(year, month) {
        return false;
    }
    let zone = match b.get(p.i) {
        None => return true,
        Some(b'T' | b't') => true,
        Some(b' ') => false,
        Some(_) => return false,
    };
    p.i += 1;
    let clock = p.num().filter(|h| *h < 24).is_some()
        && p.eat(b':')
        && p.num().filter(|m| *m < 60).is_some()
        && p.eat(b':')
        && p.num().filter(|s| *s < 60).is_some();
    if !clock {
        return false;
    }
    if matches!(b.get(p.i), Some(b'.' | b',')) && b.get(p.i + 1).is_some_and(u8::is_ascii_digit) {
        p.i += 1;
        while b.get(p.i).is_some_and(u8::is_ascii_digit) {
            p.i += 1;
        }
    }
    if !zone {
        return p.i == b.len();
    }
    match &b[p.i..] {
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    /// Go's `getnum(s, false)`: one or two digits.
    fn num(&mut self) -> Option<u32> {
        let d = |i: usize| {
            self.b
                .get(i)
                .filter(|c| c.is_ascii_digit())
                .map(|c| u32::from(c - b'0'))
        };
        let first = d(self.i)?;
        self.i += 1;
        match d(self.i) {
            Some(second) => {
                self.i += 1;
                Some(first * 10 + second)
            }
            None => Some(first),
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let ok = self.b.get(self.i) == Some(&c);
        self.i += usize::from(ok);
        ok
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 => match (year % 400, year % 100, year % 4) {
            (0, _, _) => 29,
            (_, 0, _) => 28,
            (_, _, 0) => 29,
            _ => 28,
        },
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_strings() {
        for s in [
            "",
            "~",
            "y",
            "NO",
            "on",
            "0",
            "-1",
            "+7",
            "0x1F",
            "0b101",
            "0o17",
            "017",
            "08",
            "1_000",
            "1.5",
            "1e3",
            ".5",
            "-.inf",
            "2018-01-02",
            "2018-1-2T3:04:05Z",
            "2018-01-02 10:00:00.5",
            "18446744073709551615",
        ] {
            assert!(
                resolves_to_non_string(s),
                "{s:?} should not resolve to a string"
            );
        }
        for s in [
            "a",
            "10.99.0.2",
            "172.16.1.0/24",
            "3390740c-dce9-48d6-b83a-a717417072ce",
            "0x",
            "1e",
            "1e400",
            "2018-13-01",
            "2018-02-30",
            "12345678-1234-1234-1234-123456789012",
            "-",
            "+",
            "0xFFFFFFFFFFFFFFFFFF",
            "compute_node",
            "assign_failure",
            ".",
            ".e1",
            "yes please",
        ] {
            assert!(
                !resolves_to_non_string(s),
                "{s:?} should resolve to a string"
            );
        }
    }

    #[test]
    fn base60() {
        assert!(is_base60_float("02:00:10:01:00:02"));
        assert!(is_base60_float("1:20"));
        assert!(is_base60_float("-1:20.5"));
        assert!(!is_base60_float("02:00:0a:63:00:03"));
        assert!(!is_base60_float("1:60"));
        assert!(!is_base60_float("12"));
    }
}
