//! Presentation helpers: Docker-style human sizes and durations, aligned tables, `--format`
//! templates (`table {{.ID}}\t{{.Repository}}`, `json`).

use std::collections::BTreeMap;
use std::io::{self, Write};

use anyhow::Result;

/// Docker's `HumanSizeWithPrecision(n, 3)`: decimal units, 3 significant digits (`4.26MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", significant(v, 3), UNITS[i])
}

/// `%.Ng` for values below 1000: N significant digits, trailing zeros dropped.
fn significant(v: f64, digits: i32) -> String {
    let int_digits = if v < 1.0 { 1 } else { v.log10().floor() as i32 + 1 };
    let decimals = (digits - int_digits).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// Docker's `HumanDuration` + " ago": "2 weeks ago", "About an hour ago".
pub fn time_ago(then_unix: i64, now_unix: i64) -> String {
    let secs = (now_unix - then_unix).max(0);
    let minutes = secs / 60;
    let hours = (secs + 1800) / 3600;
    let s = if secs < 1 {
        "Less than a second".to_string()
    } else if secs == 1 {
        "1 second".to_string()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if minutes == 1 {
        "About a minute".to_string()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".to_string()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", secs / 3600 / 24 / 365)
    };
    format!("{s} ago")
}

pub fn now_unix() -> i64 {
    crate::store::layers::now_unix()
}

/// Cuts `s` to `max` characters with a trailing `…`, as Docker does for long cells.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A row of named fields, as `--format` templates see it.
pub type Row = BTreeMap<&'static str, String>;

/// A mistake in how a command was called (a bad flag value, an unknown filter): `main` exits 125
/// for it, as Docker's CLI does for its own failures.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `bail!` for a [`UsageError`].
macro_rules! usage_bail {
    ($($arg:tt)*) => {
        return Err($crate::cli::output::UsageError(format!($($arg)*)).into())
    };
}
pub(crate) use usage_bail;

/// Writes rows as an aligned table (3-space gutters like Docker) with the given columns.
pub fn print_table(out: &mut dyn Write, columns: &[(&'static str, &str)], rows: &[Row]) -> io::Result<()> {
    let mut lines: Vec<Vec<&str>> = vec![columns.iter().map(|(_, h)| *h).collect()];
    lines.extend(
        rows.iter().map(|r| columns.iter().map(|(k, _)| r.get(k).map_or("", String::as_str)).collect()),
    );
    write_aligned(out, &lines)
}

/// A parsed `--format` value.
pub enum Format {
    /// One JSON object per row (`--format json`).
    Json,
    /// A Go-template-like line, optionally with a header (`table ...`).
    Template { table: bool, parts: Vec<Part> },
}

pub enum Part {
    Text(String),
    Field(String),
}

impl Format {
    /// Parses `json`, `table`, `table TEMPLATE` or `TEMPLATE` with `{{.Field}}` and `{{json .Field}}`
    /// placeholders; `\t` and `\n` escapes are honoured. Unknown fields are an error naming them.
    pub fn parse(spec: &str, known: &[&str]) -> Result<Format> {
        if spec == "json" || spec == "{{json .}}" {
            return Ok(Format::Json);
        }
        let (table, body) = match spec.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start())
            }
            _ => (false, spec),
        };
        if body.trim().is_empty() {
            usage_bail!("invalid --format {spec:?}: empty template (try \"table {{{{.ID}}}}\" or \"json\")");
        }
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let Some(end) = rest[start..].find("}}") else {
                usage_bail!("invalid --format {spec:?}: unclosed {{{{")
            };
            let inner = rest[start + 2..start + end].trim();
            let field = inner.strip_prefix("json").map(str::trim).unwrap_or(inner);
            let Some(name) = field.strip_prefix('.') else {
                usage_bail!("invalid --format {spec:?}: {{{{{inner}}}}} is not a field")
            };
            if !known.contains(&name) {
                usage_bail!("invalid --format {spec:?}: unknown field .{name} (known: {})", known.join(", "));
            }
            parts.push(Part::Field(name.to_string()));
            rest = &rest[start + end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Format::Template { table, parts })
    }

    /// Renders rows. `headers` maps a field to its table header.
    pub fn render(&self, out: &mut dyn Write, rows: &[Row], headers: &dyn Fn(&str) -> String) -> Result<()> {
        match self {
            Format::Json => {
                for r in rows {
                    writeln!(out, "{}", serde_json::to_string(r)?)?;
                }
            }
            Format::Template { table, parts } => {
                let fill = |get: &dyn Fn(&str) -> String| -> String {
                    parts
                        .iter()
                        .map(|p| match p {
                            Part::Text(t) => t.clone(),
                            Part::Field(f) => get(f),
                        })
                        .collect()
                };
                if *table {
                    // Align like Docker's tabwriter: render cells, then pad tab-separated columns.
                    let mut lines = vec![fill(&|f| headers(f))];
                    lines.extend(rows.iter().map(|r| fill(&|f| r.get(f).cloned().unwrap_or_default())));
                    write_tabbed(out, &lines)?;
                } else {
                    for r in rows {
                        writeln!(out, "{}", fill(&|f| r.get(f).cloned().unwrap_or_default()))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Aligns tab-separated cells into columns with 3-space gutters.
fn write_tabbed(out: &mut dyn Write, lines: &[String]) -> io::Result<()> {
    let split: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    write_aligned(out, &split)
}

/// Writes lines of cells, each column as wide as its widest cell plus a 3-space gutter; lines may
/// have different numbers of cells, and trailing blanks are trimmed.
fn write_aligned(out: &mut dyn Write, lines: &[Vec<&str>]) -> io::Result<()> {
    let mut widths: Vec<usize> = Vec::new();
    for cells in lines {
        for (i, c) in cells.iter().enumerate() {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for cells in lines {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                s.extend(std::iter::repeat_n(' ', widths[i] - c.chars().count() + 3));
            }
        }
        writeln!(out, "{}", s.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(74_800_000), "74.8MB");
        assert_eq!(human_size(1_000_000_000), "1GB");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(time_ago(100, 100), "Less than a second ago");
        assert_eq!(time_ago(0, 59), "59 seconds ago");
        assert_eq!(time_ago(0, 90), "About a minute ago");
        assert_eq!(time_ago(0, 3600), "About an hour ago");
        assert_eq!(time_ago(0, 15 * 86400), "2 weeks ago");
        assert_eq!(time_ago(0, 3 * 365 * 86400), "3 years ago");
    }

    #[test]
    fn templates_render_and_reject_unknown_fields() {
        let f = Format::parse("table {{.ID}}\\t{{.Repository}}", &["ID", "Repository"]).unwrap();
        let mut row = Row::new();
        row.insert("ID", "abc".into());
        row.insert("Repository", "busybox".into());
        let mut out = Vec::new();
        f.render(&mut out, &[row], &|f| f.to_uppercase()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "ID    REPOSITORY\nabc   busybox\n");
        assert!(Format::parse("{{.Nope}}", &["ID"]).is_err());
        assert!(Format::parse("{{.ID", &["ID"]).is_err());
    }
}
