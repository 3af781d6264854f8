//! [`Row`]: the decoded columns of a key, `before` or `after` block.

use std::ops::Range;

/// An ordered list of `(column name, value text)` pairs, stored in one string
/// buffer so that decoding a row costs no allocation per column.
///
/// A value is `None` for SQL NULL, otherwise the canonical text of the value
/// (see [`crate::cdc::logical`] for the text form of each Debezium type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    text: String,
    fields: Vec<(Range<u32>, Option<Range<u32>>)>,
}

impl Row {
    /// An empty row.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes every column, keeping the allocations.
    pub fn clear(&mut self) {
        self.text.clear();
        self.fields.clear();
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the row has no column.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn span(&self, range: &Range<u32>) -> &str {
        &self.text[range.start as usize..range.end as usize]
    }

    fn push_name(&mut self, name: &str) -> Range<u32> {
        let start = self.text.len() as u32;
        self.text.push_str(name);
        start..self.text.len() as u32
    }

    /// Appends a column with a NULL value.
    pub fn push_null(&mut self, name: &str) {
        let name = self.push_name(name);
        self.fields.push((name, None));
    }

    /// Appends a column with the given value text.
    pub fn push(&mut self, name: &str, value: &str) {
        self.push_with(name, |buf| {
            buf.push_str(value);
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap_or_else(|never| match never {});
    }

    /// Appends a column whose value text is written by `write` into the row's
    /// buffer. If `write` fails, the row is left as it was and the error returned.
    pub fn push_with<E>(
        &mut self,
        name: &str,
        write: impl FnOnce(&mut String) -> Result<(), E>,
    ) -> Result<(), E> {
        let mark = self.text.len();
        let name_range = self.push_name(name);
        let value_start = self.text.len() as u32;
        match write(&mut self.text) {
            Ok(()) => {
                let value = value_start..self.text.len() as u32;
                self.fields.push((name_range, Some(value)));
                Ok(())
            }
            Err(e) => {
                self.text.truncate(mark);
                Err(e)
            }
        }
    }

    /// The columns in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> + '_ {
        self.fields
            .iter()
            .map(|(name, value)| (self.span(name), value.as_ref().map(|v| self.span(v))))
    }

    /// The value of column `name`: `None` if absent, `Some(None)` if NULL.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_read_back() {
        let mut row = Row::new();
        row.push("id", "1");
        row.push_null("note");
        let failed: Result<(), &str> = row.push_with("bad", |buf| {
            buf.push_str("partial");
            Err("boom")
        });
        assert!(failed.is_err());
        row.push("name", "ä");
        let cols: Vec<_> = row.iter().collect();
        assert_eq!(
            cols,
            vec![("id", Some("1")), ("note", None), ("name", Some("ä"))]
        );
        assert_eq!(row.get("note"), Some(None));
        assert_eq!(row.get("bad"), None);
        row.clear();
        assert!(row.is_empty());
    }
}
