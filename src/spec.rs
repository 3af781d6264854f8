//! Layer spec files: reading a layer's `*.toml` specs and naming rules.
//!
//! Shared by silver (table specs) and gold (mart specs), so both name files,
//! report TOML errors with their line, and validate names the same way.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A layer's spec folder and whether it must exist.
#[derive(Debug, Clone, Copy)]
pub struct SpecFolder<'a> {
    /// The folder.
    pub path: &'a Path,
    /// Whether a missing folder is an error: it is when the folder was
    /// configured; a missing default folder means the layer has no specs
    /// (a lake with only bronze, or a root read by `query` and `status`).
    pub required: bool,
}

/// The table spec files (`*.toml`) of a layer folder, sorted by name, each
/// with its text. `what` names the folder in errors (e.g. "silver table specs").
pub fn read_spec_files(folder: SpecFolder<'_>, what: &str) -> Result<Vec<(PathBuf, String)>> {
    let dir = folder.path;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !folder.required => {
            tracing::info!(folder = %dir.display(), "no {what} folder (the default): no specs");
            return Ok(Vec::new());
        }
        Err(e) => {
            return Err(Error::Config {
                file: dir.to_path_buf(),
                message: format!("cannot read the {what} folder: {e}"),
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
            Ok((file, text))
        })
        .collect()
}

/// Whether `name` is a lower-case SQL identifier (letters, digits, `_`; not
/// starting with a digit), safe to splice unquoted into generated SQL.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whether `name` is a lower-case SQL identifier (safe to splice unquoted)
/// short enough for Postgres object names with suffixes.
pub fn is_spec_name(name: &str) -> bool {
    is_identifier(name) && name.len() <= MAX_SPEC_NAME
}

/// The longest spec (table or mart) name: it becomes a Delta folder, a
/// Postgres table and index names with suffixes (Postgres allows 63).
pub const MAX_SPEC_NAME: usize = 48;

/// Reads one layer spec file: its name (the file stem, which must be a
/// lower-case identifier of at most [`MAX_SPEC_NAME`] characters) and its
/// TOML text parsed as `T`. `what` names the thing in errors ("table",
/// "mart"); TOML errors carry the line of the offending key.
pub fn parse_spec_file<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
    what: &str,
) -> Result<(String, T)> {
    let err = |message: String| Error::Config {
        file: file.to_path_buf(),
        message,
    };
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| err(format!("the file name is not a {what} name")))?
        .to_string();
    if !is_identifier(&name) || name.len() > MAX_SPEC_NAME {
        return Err(err(format!(
            "{what} name `{name}` (the file name) must be lower-case letters, digits and _ \
             (at most {MAX_SPEC_NAME})"
        )));
    }
    let raw: T = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        err(match line {
            Some(line) => format!("line {line}: {}", e.message()),
            None => e.message().to_string(),
        })
    })?;
    Ok((name, raw))
}

/// A DataFusion error about `sql` with the SQL line it points at and a
/// caret under the column (when the parser or planner reports a position),
/// shared by silver, gold and `lakehouse query` so every SQL error reads alike.
pub fn describe_sql_error(sql: &str, error: &datafusion::error::DataFusionError) -> String {
    let message = error.to_string();
    let position = error
        .diagnostic()
        .and_then(|d| d.span)
        .map(|s| (s.start.line as usize, s.start.column as usize))
        .filter(|(l, _)| *l > 0)
        .or_else(|| parse_position(&message))
        .or_else(|| unknown_name_position(sql, &message));
    match position {
        Some((line, column)) => {
            let text = sql.lines().nth(line - 1).unwrap_or("");
            format!(
                "{message}\n  at line {line}, column {column}:\n  {text}\n  {}^",
                " ".repeat(column.saturating_sub(1))
            )
        }
        None => message,
    }
}

/// Where `sql` first mentions the column a "No field named x" error names
/// (DataFusion gives no position for it); the name as a whole word.
fn unknown_name_position(sql: &str, message: &str) -> Option<(usize, usize)> {
    let rest = &message[message.find("No field named ")? + 15..];
    let name: String = rest
        .trim_matches('"')
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.' || *c == '"')
        .collect();
    let name = name.trim_end_matches('.').replace('"', "");
    let word = name.rsplit('.').next().filter(|w| !w.is_empty())?;
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    sql.lines().enumerate().find_map(|(index, line)| {
        line.match_indices(word).find_map(|(at, _)| {
            let before = line[..at].chars().next_back();
            let after = line[at + word.len()..].chars().next();
            (!before.is_some_and(is_word) && !after.is_some_and(is_word))
                .then(|| (index + 1, line[..at].chars().count() + 1))
        })
    })
}

/// `Line: L, Column: C` as sqlparser writes it.
fn parse_position(message: &str) -> Option<(usize, usize)> {
    let rest = &message[message.find("Line: ")? + 6..];
    let line: usize = rest.split(',').next()?.trim().parse().ok()?;
    let rest = &rest[rest.find("Column: ")? + 8..];
    let column: usize = rest
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((line, column))
}

/// The 1-based line of `key` in a spec's TOML `text`, for errors that name
/// a key but come from checks after parsing (so TOML gave no position).
/// `key` is a path as errors write it: `incremental.fact_sales`,
/// `lookups[1].table`, `date.covers`. A segment not found on a line of its
/// own (a key inside an inline table) gives the line of its parent.
pub fn key_line(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let assigns = |line: &str, name: &str| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    let mut found: Option<usize> = None;
    for segment in key.split('.') {
        let from = found.unwrap_or(0);
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let hit = match index {
            Some(index) => {
                let header = format!("[[{name}]]");
                lines
                    .iter()
                    .enumerate()
                    .skip(from)
                    .filter(|(_, l)| l.trim() == header)
                    .nth(index)
            }
            None => {
                let header = format!("[{name}]");
                lines
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, l)| l.trim() == header || assigns(l.trim(), name))
            }
        };
        match hit {
            Some((line, _)) => found = Some(line),
            None => break,
        }
    }
    found.map(|line| line + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_spec_folder_is_an_error_only_when_configured() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let default = SpecFolder {
            path: &missing,
            required: false,
        };
        assert!(
            read_spec_files(default, "silver table specs")
                .unwrap()
                .is_empty()
        );
        let configured = SpecFolder {
            path: &missing,
            required: true,
        };
        let err = read_spec_files(configured, "silver table specs")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope") && err.contains("silver table specs"),
            "{err}"
        );
    }

    #[test]
    fn key_lines_follow_the_key_path() {
        let text = "kind = \"fact\"\nkeys = [\"id\"]\n[[lookups]]\ntable = \"a\"\n[[lookups]]\ntable = \"b\"\n[incremental]\nfact_sales = \"d\"\n";
        assert_eq!(key_line(text, "keys"), Some(2));
        assert_eq!(key_line(text, "lookups[1].table"), Some(6));
        assert_eq!(key_line(text, "lookups[0]"), Some(3));
        assert_eq!(key_line(text, "incremental.fact_sales"), Some(8));
        assert_eq!(key_line(text, "nope"), None);
    }
}
