//! A YAML writer that produces what Go's `gopkg.in/yaml.v2` `Marshal` produces, byte for byte,
//! for the shapes SSNTP payloads have (reference/ssntp.md §7). serde_yaml_ng is a different
//! emitter (other quoting, indented sequences), and ciao peers are compared with our frames
//! byte for byte in the tests, so we write the text ourselves.
//!
//! Layout is libyaml's block style as yaml.v2 drives it: keys in struct-field order, 2-space
//! indent, sequences inside mappings not indented, empty containers as `[]` / `{}`, a final
//! newline and no `---`. The per-string style (plain, single or double quoted) and the folding
//! of long lines at 80 columns follow yaml.v2 v2.2 (see [`super::quote`]).

use super::quote::{scalar_style, Style};

/// The document tree `to_yaml` builds from a payload before writing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// A Go string: written in the style yaml.v2 picks for its text.
    Str(String),
    /// An integer or a bool: always plain.
    Plain(String),
    Seq(Vec<Node>),
    Map(Vec<(&'static str, Node)>),
}

/// libyaml's `best_width`: where yaml.v2 folds long scalars at a space.
const BEST_WIDTH: usize = 80;
/// libyaml's `best_indent`.
const INDENT: usize = 2;

/// Writes `root` as one yaml.v2 document.
pub(crate) fn document(root: &Node) -> Vec<u8> {
    let mut w = Writer::default();
    match root {
        Node::Map(entries) if !entries.is_empty() => w.map(entries, 0, false),
        Node::Seq(items) if !items.is_empty() => w.seq(items, 0, false),
        other => {
            w.inline(other, INDENT);
            w.end_line();
        }
    }
    w.out.into_bytes()
}

#[derive(Default)]
struct Writer {
    out: String,
    /// Characters (not bytes) since the last line break, as libyaml counts them for folding.
    column: usize,
}

impl Writer {
    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.put(c));
    }

    fn line_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn end_line(&mut self) {
        if self.column != 0 {
            self.line_break();
        }
    }

    fn pad_to(&mut self, indent: usize) {
        while self.column < indent {
            self.put(' ');
        }
    }

    /// libyaml's `write_indent` in the middle of a scalar: a fresh line at the scalar's indent.
    fn fold(&mut self, indent: usize) {
        self.line_break();
        self.pad_to(indent);
    }

    /// A block mapping at `indent`; `inline_first` when its first key follows a `- `.
    fn map(&mut self, entries: &[(&'static str, Node)], indent: usize, inline_first: bool) {
        for (i, (key, value)) in entries.iter().enumerate() {
            if i > 0 || !inline_first {
                self.pad_to(indent);
            }
            self.put_str(key);
            self.put(':');
            match value {
                Node::Map(inner) if !inner.is_empty() => {
                    self.line_break();
                    self.map(inner, indent + INDENT, false);
                }
                Node::Seq(items) if !items.is_empty() => {
                    self.line_break();
                    // yaml.v2 does not indent a sequence that is a mapping value.
                    self.seq(items, indent, false);
                }
                other => {
                    self.inline(other, indent + INDENT);
                    self.end_line();
                }
            }
        }
    }

    /// A block sequence at `indent`; `inline_first` when its first `-` follows another `- `.
    fn seq(&mut self, items: &[Node], indent: usize, inline_first: bool) {
        for (i, item) in items.iter().enumerate() {
            if i > 0 || !inline_first {
                self.pad_to(indent);
            }
            self.put('-');
            match item {
                Node::Map(inner) if !inner.is_empty() => {
                    self.put(' ');
                    self.map(inner, indent + INDENT, true);
                }
                Node::Seq(inner) if !inner.is_empty() => {
                    self.put(' ');
                    self.seq(inner, indent + INDENT, true);
                }
                other => {
                    self.inline(other, indent + INDENT);
                    self.end_line();
                }
            }
        }
    }

    /// A value on the current line after `key:` or `-`: a space, then the scalar or `[]`/`{}`.
    fn inline(&mut self, node: &Node, indent: usize) {
        self.put(' ');
        match node {
            Node::Plain(text) => self.put_str(text),
            Node::Str(text) => match scalar_style(text) {
                Style::Plain => self.plain(text, indent),
                Style::SingleQuoted => self.single_quoted(text, indent),
                Style::DoubleQuoted => self.double_quoted(text, indent),
            },
            Node::Seq(_) => self.put_str("[]"),
            Node::Map(_) => self.put_str("{}"),
        }
    }

    /// libyaml `write_plain_scalar` (plain text never holds a line break).
    fn plain(&mut self, text: &str, indent: usize) {
        let mut spaces = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == ' ' {
                if !spaces && self.column > BEST_WIDTH && chars.peek() != Some(&' ') {
                    self.fold(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
    }

    /// libyaml `write_single_quoted_scalar`: `'` doubled, a line break as an empty line.
    fn single_quoted(&mut self, text: &str, indent: usize) {
        self.put('\'');
        let chars: Vec<char> = text.chars().collect();
        let (mut spaces, mut breaks) = (false, false);
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                let foldable = i > 0 && i + 1 < chars.len() && chars[i + 1] != ' ';
                if !spaces && self.column > BEST_WIDTH && foldable {
                    self.fold(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.line_break();
                }
                if c == '\n' {
                    self.line_break();
                } else {
                    self.out.push(c);
                    self.column = 0;
                }
                breaks = true;
            } else {
                if breaks {
                    self.pad_to(indent);
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                spaces = false;
                breaks = false;
            }
        }
        self.put('\'');
    }

    /// libyaml `write_double_quoted_scalar`: escapes, and folding where `\` keeps a space.
    fn double_quoted(&mut self, text: &str, indent: usize) {
        self.put('"');
        let chars: Vec<char> = text.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if !super::quote::is_printable(c)
                || c == '\u{feff}'
                || is_break(c)
                || c == '"'
                || c == '\\'
            {
                self.escape(c);
                spaces = false;
            } else if c == ' ' {
                if !spaces && self.column > BEST_WIDTH && i > 0 && i + 1 < chars.len() {
                    self.fold(indent);
                    if chars[i + 1] == ' ' {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.put('"');
    }

    fn escape(&mut self, c: char) {
        self.put('\\');
        let short = match c {
            '\0' => '0',
            '\u{7}' => 'a',
            '\u{8}' => 'b',
            '\t' => 't',
            '\n' => 'n',
            '\u{b}' => 'v',
            '\u{c}' => 'f',
            '\r' => 'r',
            '\u{1b}' => 'e',
            '"' => '"',
            '\\' => '\\',
            '\u{85}' => 'N',
            '\u{a0}' => '_',
            '\u{2028}' => 'L',
            '\u{2029}' => 'P',
            _ => {
                let v = u32::from(c);
                let text = match v {
                    0..=0xff => format!("x{v:02X}"),
                    0x100..=0xffff => format!("u{v:04X}"),
                    _ => format!("U{v:08X}"),
                };
                self.put_str(&text);
                return;
            }
        };
        self.put(short);
    }
}

/// libyaml `is_break`.
pub(crate) fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Node {
        Node::Str(text.to_owned())
    }

    fn doc(node: &Node) -> String {
        String::from_utf8(document(node)).expect("utf-8")
    }

    #[test]
    fn layout_matches_yaml_v2() {
        let root = Node::Map(vec![
            ("a", s("x")),
            ("empty", s("")),
            ("list", Node::Seq(vec![s("1.2.3.0/24"), s("y")])),
            (
                "items",
                Node::Seq(vec![Node::Map(vec![
                    ("k", Node::Plain("1".into())),
                    ("l", s("v")),
                ])]),
            ),
            ("nested", Node::Map(vec![("inner", Node::Seq(vec![]))])),
            ("none", Node::Map(vec![])),
        ]);
        assert_eq!(
            doc(&root),
            "a: x\nempty: \"\"\nlist:\n- 1.2.3.0/24\n- \"y\"\nitems:\n- k: 1\n  l: v\nnested:\n  inner: []\nnone: {}\n"
        );
    }

    #[test]
    fn styles() {
        let cases = [
            ("plain text", "plain text"),
            ("true", "\"true\""),
            ("123", "\"123\""),
            ("02:00:10:01:00:02", "\"02:00:10:01:00:02\""),
            ("02:00:ac:10:01:02", "02:00:ac:10:01:02"),
            ("2018-01-02", "\"2018-01-02\""),
            ("- x", "'- x'"),
            ("a: b", "'a: b'"),
            ("it's", "it's"),
            ("'q", "'''q'"),
            (" lead", "' lead'"),
            ("tab\there", "\"tab\\there\""),
            ("a\nb", "'a\n\n  b'"),
            ("a \nb", "\"a \\nb\""),
            ("snow\u{2603}", "snow\u{2603}"),
            ("\u{1f600}", "\"\\U0001F600\""),
        ];
        for (text, want) in cases {
            let got = doc(&Node::Map(vec![("k", s(text))]));
            assert_eq!(got, format!("k: {want}\n"), "for {text:?}");
        }
    }

    #[test]
    fn folds_long_lines_like_yaml_v2() {
        let words = vec!["word"; 30].join(" ");
        let got = doc(&Node::Map(vec![("key", s(&words))]));
        // Folding happens at the first space after column 80, continuing at indent 2.
        let first = format!("key: {}", vec!["word"; 16].join(" "));
        assert!(got.starts_with(&format!("{first}\n  word")), "{got}");
    }
}
