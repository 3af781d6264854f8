//! A small borrowed JSON DOM built on [`jiter`].
//!
//! Debezium payloads are small next to their schemas, so the decoder parses the
//! payload into this tree and then walks it. Strings without escapes and all
//! numbers borrow from the input; numbers keep their exact text so that decimals
//! such as `123456789876543212345678987654321.110` never go through `f64`.

use std::borrow::Cow;

use jiter::{Jiter, JiterError, LinePosition, Peek};

/// Nesting deeper than this is rejected instead of risking a stack overflow.
pub const MAX_DEPTH: usize = 128;

/// A parsed JSON value borrowing from the input bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as its exact text (including `NaN`, `Infinity`, `-Infinity`).
    Number(&'a str),
    /// A string, unescaped (borrowed when the input had no escapes).
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object, keys in input order.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Short name of the JSON kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }

    /// The entries when this is an object.
    pub fn as_object(&self) -> Option<&[(Cow<'a, str>, Json<'a>)]> {
        match self {
            Json::Object(entries) => Some(entries),
            _ => None,
        }
    }

    /// The text when this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The first value of key `name` when this is an object.
    pub fn get(&self, name: &str) -> Option<&Json<'a>> {
        self.as_object()
            .and_then(|entries| entries.iter().find(|(k, _)| k == name).map(|(_, v)| v))
    }

    /// Whether this is JSON `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// Appends the compact JSON text of this value (strings re-escaped, numbers
    /// verbatim; non-finite numbers become strings because JSON has no NaN).
    pub fn write_compact(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => write_json_number(n, out),
            Json::String(s) => write_json_string(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_compact(out);
                }
                out.push(']');
            }
            Json::Object(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(k, out);
                    out.push(':');
                    v.write_compact(out);
                }
                out.push('}');
            }
        }
    }

    /// Appends the text of this value as a column value: strings unescaped,
    /// numbers verbatim, booleans `true`/`false`, containers as compact JSON.
    /// `null` appends nothing (callers handle NULL themselves).
    pub fn write_plain(&self, out: &mut String) {
        match self {
            Json::Null => {}
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::String(s) => out.push_str(s),
            Json::Array(_) | Json::Object(_) => self.write_compact(out),
        }
    }

    /// A short human-readable rendering for error messages (truncated).
    pub fn snippet(&self) -> String {
        let mut s = String::new();
        self.write_compact(&mut s);
        if s.len() > 60 {
            let mut cut = 57;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str("...");
        }
        format!("{} {}", self.kind(), s)
    }
}

/// Writes a number token as JSON: verbatim when finite, quoted otherwise.
pub fn write_json_number(n: &str, out: &mut String) {
    if matches!(n, "NaN" | "Infinity" | "-Infinity") {
        out.push('"');
        out.push_str(n);
        out.push('"');
    } else {
        out.push_str(n);
    }
}

/// Writes `s` as a JSON string literal with the minimal escapes.
pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // Every byte matched above is ASCII, so `i` is a char boundary.
        out.push_str(s.get(start..i).unwrap_or_default());
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

/// A JSON syntax error at an absolute byte offset of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset in the whole input.
    pub index: usize,
    /// What was wrong.
    pub message: String,
}

impl SyntaxError {
    /// `"<message> at line L column C"`, positions computed on `input`.
    pub fn describe(&self, input: &[u8]) -> String {
        format!(
            "{} at {}",
            self.message,
            LinePosition::find(input, self.index)
        )
    }
}

/// A [`Jiter`] over a suffix of the input, so that the decoder can jump over a
/// cached schema without re-scanning it. Offsets reported are absolute.
pub struct Cursor<'a> {
    input: &'a [u8],
    /// The input as text, validated once, so that strings without escapes can
    /// be borrowed without re-validating each one; `Err(offset)` when the
    /// input is not UTF-8.
    text: Result<&'a str, usize>,
    base: usize,
    jiter: Jiter<'a>,
    /// Entries of the objects being parsed, innermost last: each object is
    /// then moved into an exactly-sized `Vec` (one allocation, no regrowth).
    entries: Vec<(Cow<'a, str>, Json<'a>)>,
    /// Items of the arrays being parsed, likewise.
    items: Vec<Json<'a>>,
}

/// `s` as a sub-slice of `text`, when jiter returned a string borrowed from
/// the input (no escapes) rather than from its own decoding buffer.
fn borrow_from<'a>(text: Result<&'a str, usize>, s: &str) -> Option<&'a str> {
    let text = text.ok()?;
    let off = (s.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let sub = text.get(off..off.checked_add(s.len())?)?;
    std::ptr::eq(sub.as_ptr(), s.as_ptr()).then_some(sub)
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Cursor {
            input,
            text: std::str::from_utf8(input).map_err(|e| e.valid_up_to()),
            base: 0,
            jiter: Jiter::new(input).with_allow_inf_nan(),
            entries: Vec::new(),
            items: Vec::new(),
        }
    }

    /// The whole input.
    pub fn input(&self) -> &'a [u8] {
        self.input
    }

    /// Absolute offset of the parser.
    pub fn position(&self) -> usize {
        self.base + self.jiter.current_index()
    }

    /// Restarts the parser at absolute offset `pos` (which must lie between two
    /// tokens, e.g. right after a complete value).
    pub fn jump_to(&mut self, pos: usize) -> Result<(), SyntaxError> {
        let rest = self.input.get(pos..).ok_or_else(|| SyntaxError {
            index: self.input.len(),
            message: "EOF while parsing a value".to_string(),
        })?;
        self.base = pos;
        self.jiter = Jiter::new(rest).with_allow_inf_nan();
        Ok(())
    }

    fn err(&self, e: JiterError) -> SyntaxError {
        SyntaxError {
            index: self.base + e.index,
            message: e.error_type.to_string(),
        }
    }

    fn slice_from(&self, abs_start: usize) -> &'a [u8] {
        self.input
            .get(abs_start..self.position())
            .unwrap_or_default()
    }

    /// Peeks at the next value.
    pub fn peek(&mut self) -> Result<Peek, SyntaxError> {
        self.jiter.peek().map_err(|e| self.err(e))
    }

    /// Consumes a `null` known from [`Cursor::peek`].
    pub fn known_null(&mut self) -> Result<(), SyntaxError> {
        self.jiter.known_null().map_err(|e| self.err(e))
    }

    /// Skips the next value, returning its exact bytes.
    pub fn skip(&mut self, peek: Peek) -> Result<&'a [u8], SyntaxError> {
        let start = self.position();
        self.jiter.known_skip(peek).map_err(|e| self.err(e))?;
        Ok(self.slice_from(start))
    }

    /// Checks that only whitespace is left.
    pub fn finish(&mut self) -> Result<(), SyntaxError> {
        self.jiter.finish().map_err(|e| self.err(e))
    }

    /// Consumes the `{` and first key of an object known from [`Cursor::peek`].
    pub fn first_key(&mut self) -> Result<Option<Cow<'a, str>>, SyntaxError> {
        let text = self.text;
        let key = self
            .jiter
            .known_object()
            .map(|k| k.map(|k| own_or_borrow(text, k)));
        key.map_err(|e| self.err(e))
    }

    /// Consumes the next key of the current object, `None` at its end.
    pub fn next_key(&mut self) -> Result<Option<Cow<'a, str>>, SyntaxError> {
        let text = self.text;
        let key = self
            .jiter
            .next_key()
            .map(|k| k.map(|k| own_or_borrow(text, k)));
        key.map_err(|e| self.err(e))
    }

    /// Parses the next value into a [`Json`] tree.
    pub fn value(&mut self, depth: usize) -> Result<Json<'a>, SyntaxError> {
        let peek = self.peek()?;
        self.known_value(peek, depth)
    }

    /// Parses a value whose first byte was peeked.
    pub fn known_value(&mut self, peek: Peek, depth: usize) -> Result<Json<'a>, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(SyntaxError {
                index: self.position(),
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        match peek {
            Peek::Null => {
                self.known_null()?;
                Ok(Json::Null)
            }
            Peek::True | Peek::False => self
                .jiter
                .known_bool(peek)
                .map(Json::Bool)
                .map_err(|e| self.err(e)),
            Peek::String => {
                let text = self.text;
                let s = self.jiter.known_str().map(|s| own_or_borrow(text, s));
                s.map(Json::String).map_err(|e| self.err(e))
            }
            Peek::Array => {
                let mark = self.items.len();
                let mut next = self.jiter.known_array().map_err(|e| self.err(e))?;
                while let Some(p) = next {
                    let item = self.known_value(p, depth + 1)?;
                    self.items.push(item);
                    next = self.jiter.array_step().map_err(|e| self.err(e))?;
                }
                Ok(Json::Array(self.items.drain(mark..).collect()))
            }
            Peek::Object => {
                let mark = self.entries.len();
                let mut key = self.first_key()?;
                while let Some(k) = key {
                    let v = self.value(depth + 1)?;
                    self.entries.push((k, v));
                    key = self.next_key()?;
                }
                Ok(Json::Object(self.entries.drain(mark..).collect()))
            }
            p if p.is_num() => {
                let start = self.position();
                let consumed = self.jiter.known_number_bytes(p).map(|_| ());
                consumed.map_err(|e| self.err(e))?;
                let text =
                    std::str::from_utf8(self.slice_from(start)).map_err(|_| SyntaxError {
                        index: start,
                        message: "invalid number".to_string(),
                    })?;
                Ok(Json::Number(text))
            }
            _ => Err(SyntaxError {
                index: self.position(),
                message: "expected value".to_string(),
            }),
        }
    }
}

fn own_or_borrow<'a>(text: Result<&'a str, usize>, s: &str) -> Cow<'a, str> {
    match borrow_from(text, s) {
        Some(b) => Cow::Borrowed(b),
        None => Cow::Owned(s.to_owned()),
    }
}

/// Parses a complete JSON document.
pub fn parse(input: &[u8]) -> Result<Json<'_>, SyntaxError> {
    let mut cursor = Cursor::new(input);
    let v = cursor.value(0)?;
    cursor.finish()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_text_and_strings_borrow() {
        let input = br#" {"a": 123456789876543212345678987654321.110, "b" : "x\"y", "c":"plain", "d":[NaN,-Infinity,1e5], "e\u00e9":null} "#;
        let v = parse(input).unwrap();
        assert_eq!(
            v.get("a"),
            Some(&Json::Number("123456789876543212345678987654321.110"))
        );
        assert_eq!(v.get("b").and_then(Json::as_str), Some("x\"y"));
        assert!(matches!(
            v.get("c"),
            Some(Json::String(Cow::Borrowed("plain")))
        ));
        assert_eq!(v.get("eé"), Some(&Json::Null));
        let mut s = String::new();
        v.write_compact(&mut s);
        assert_eq!(
            s,
            r#"{"a":123456789876543212345678987654321.110,"b":"x\"y","c":"plain","d":["NaN","-Infinity",1e5],"eé":null}"#
        );
    }

    #[test]
    fn errors_have_positions() {
        let e = parse(b"hello").unwrap_err();
        assert_eq!(e.describe(b"hello"), "expected value at line 1 column 1");
        assert!(parse(b"{\"a\":1").is_err());
        assert!(parse(b"[1,2]x").is_err());
        let deep = "[".repeat(1000);
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse(b"\"\xff\"").is_err());
    }
}
