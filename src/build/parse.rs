//! Dockerfile syntax as Docker's reference defines it: parser directives (`escape`, `syntax`,
//! `check`), comments, line continuations with the escape character, heredocs (`<<EOF`, `<<-EOF`,
//! quoted delimiters) on RUN, COPY and ADD, `--flag=value` options, and JSON (exec) or shell forms.
//!
//! Written here rather than taken from a crate: `dockerfile-parser-rs` 3.4 only knows `EOF` as a
//! heredoc delimiter, has no `escape` directive and gives errors without line numbers;
//! `dockerfile-parser` 0.9 (a pest grammar) has neither heredocs nor the `escape` directive.

use std::fmt;

/// Instructions Docker knows; any other word at the start of an instruction is an error.
pub const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// A parse error: the file, the 1-based line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub escape: char,
    /// The `# syntax=` directive: accepted, not acted on (there is no frontend to fetch).
    pub syntax: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// The arguments after the keyword and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// `["a", "b"]`
    Json(Vec<String>),
    /// Everything else, continuations joined, exactly as written.
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// An unquoted delimiter: the body takes variable expansion.
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// Upper-case keyword.
    pub keyword: String,
    /// `--name=value` options in order (`--link` alone has the value "").
    pub flags: Vec<(String, String)>,
    pub args: Args,
    pub heredocs: Vec<Heredoc>,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn flags_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.flags.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The arguments as one string (JSON form re-encoded).
    pub fn args_text(&self) -> String {
        match &self.args {
            Args::Shell(s) => s.clone(),
            Args::Json(v) => serde_json::to_string(v).unwrap_or_default(),
        }
    }
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.keyword)?;
        for (n, v) in &self.flags {
            if v.is_empty() { write!(f, " --{n}")? } else { write!(f, " --{n}={v}")? }
        }
        write!(f, " {}", self.args_text())
    }
}

/// Instructions whose heredocs are read (BuildKit's set).
fn takes_heredocs(keyword: &str) -> bool {
    matches!(keyword, "RUN" | "COPY" | "ADD")
}

/// Instructions that take `--flag` options before their arguments.
fn takes_flags(keyword: &str) -> bool {
    matches!(keyword, "FROM" | "RUN" | "COPY" | "ADD" | "HEALTHCHECK")
}

pub fn parse(file: &str, text: &str) -> Result<Dockerfile, ParseError> {
    let err = |line: usize, message: String| ParseError { file: file.to_string(), line, message };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut i = 0;
    // Parser directives: only at the very top, `# key=value`, each at most once.
    let mut seen = Vec::new();
    while i < lines.len() {
        let Some(d) = directive(lines[i]) else { break };
        let (key, value) = d;
        if seen.contains(&key) {
            return Err(err(i + 1, format!("only one {key} parser directive can be used")));
        }
        match key.as_str() {
            "escape" => {
                escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(err(i + 1, format!("invalid escape token {other:?}: must be ` or \\")));
                    }
                }
            }
            "syntax" => syntax = Some(value),
            _ => {}
        }
        seen.push(key);
        i += 1;
    }
    let mut instructions = Vec::new();
    while i < lines.len() {
        let start = i;
        let first = lines[i].trim_start();
        i += 1;
        if first.is_empty() || first.starts_with('#') {
            continue;
        }
        // Join continuation lines; comment lines inside a continuation are dropped, as are empty ones.
        let mut logical = String::new();
        let mut cur = first.to_string();
        loop {
            match strip_continuation(&cur, escape) {
                Some(body) => {
                    logical.push_str(body);
                    let mut next = None;
                    while i < lines.len() {
                        let l = lines[i];
                        i += 1;
                        let t = l.trim_start();
                        if t.starts_with('#') || t.is_empty() {
                            continue;
                        }
                        next = Some(l.to_string());
                        break;
                    }
                    match next {
                        Some(n) => cur = n,
                        None => break,
                    }
                }
                None => {
                    logical.push_str(&cur);
                    break;
                }
            }
        }
        let (word, rest) = split_word(&logical);
        let keyword = word.to_ascii_uppercase();
        if !INSTRUCTIONS.contains(&keyword.as_str()) {
            return Err(err(start + 1, format!("unknown instruction: {word}")));
        }
        let mut rest = rest.trim().to_string();
        let mut flags = Vec::new();
        if takes_flags(&keyword) {
            while rest.starts_with("--") {
                let (f, r) = split_word(&rest);
                let f = f[2..].to_string();
                let (n, v) = match f.split_once('=') {
                    Some((n, v)) => (n.to_string(), unquote(v)),
                    None => (f.clone(), String::new()),
                };
                if n.is_empty() {
                    return Err(err(start + 1, format!("{keyword}: invalid flag --{f}")));
                }
                flags.push((n, v));
                rest = r.trim_start().to_string();
            }
        }
        let mut heredocs = Vec::new();
        if takes_heredocs(&keyword) {
            for (name, expand, strip_tabs) in heredoc_markers(&rest, escape) {
                let mut body = String::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let l = if strip_tabs { l.trim_start_matches('\t') } else { l };
                    if l == name {
                        closed = true;
                        break;
                    }
                    body.push_str(l);
                    body.push('\n');
                }
                if !closed {
                    return Err(err(start + 1, format!("{keyword}: heredoc <<{name} is never closed")));
                }
                heredocs.push(Heredoc { name, content: body, expand });
            }
        }
        if rest.is_empty() {
            return Err(err(start + 1, format!("{keyword} requires at least one argument")));
        }
        let args = match json_array(&rest) {
            Some(v) => Args::Json(v),
            None => Args::Shell(rest),
        };
        instructions.push(Instruction { line: start + 1, keyword, flags, args, heredocs });
    }
    Ok(Dockerfile { escape, syntax, instructions })
}

/// `# key=value` with a known-shaped key, lower-cased; None when the line is anything else.
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim().strip_prefix('#')?;
    let (k, v) = body.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let k = k.to_ascii_lowercase();
    matches!(k.as_str(), "syntax" | "escape" | "check").then(|| (k, v.trim().to_string()))
}

/// A line ending in the escape character (trailing blanks allowed) continues: its body without it.
fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end_matches([' ', '\t']);
    t.strip_suffix(escape)
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(p) => (&s[..p], &s[p..]),
        None => (s, ""),
    }
}

fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

/// A JSON array of strings, as Docker accepts it for the exec form.
fn json_array(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') || !t.ends_with(']') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// The heredoc markers of an instruction line, in order: (delimiter, expands, strips tabs).
/// A marker is `<<WORD`, `<<-WORD`, `<<"WORD"` or `<<'WORD'` outside quotes; `<<<` is not one.
fn heredoc_markers(line: &str, escape: char) -> Vec<(String, bool, bool)> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut k = 0;
    while k < chars.len() {
        let c = chars[k];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            } else if c == escape && q == '"' {
                k += 1;
            }
            k += 1;
            continue;
        }
        if c == escape {
            k += 2;
            continue;
        }
        if c == '"' || c == '\'' {
            quote = Some(c);
            k += 1;
            continue;
        }
        if c == '<' && chars.get(k + 1) == Some(&'<') && chars.get(k + 2) != Some(&'<') {
            let mut j = k + 2;
            let strip = chars.get(j) == Some(&'-');
            if strip {
                j += 1;
            }
            let q = chars.get(j).copied().filter(|c| *c == '"' || *c == '\'');
            if q.is_some() {
                j += 1;
            }
            let begin = j;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '-') {
                j += 1;
            }
            let name: String = chars[begin..j].iter().collect();
            let closes = match q {
                Some(q) => chars.get(j) == Some(&q),
                None => true,
            };
            if !name.is_empty() && closes && (k == 0 || chars[k - 1] != '<') {
                out.push((name, q.is_none(), strip));
                k = j + usize::from(q.is_some());
                continue;
            }
        }
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Instruction {
        let d = parse("Dockerfile", text).unwrap();
        assert_eq!(d.instructions.len(), 1, "{d:?}");
        d.instructions.into_iter().next().unwrap()
    }

    #[test]
    fn continuations_comments_and_forms() {
        let d = parse(
            "Dockerfile",
            "# syntax=docker/dockerfile:1\n# a comment\nFROM busybox AS base\n\nRUN echo a \\\n# dropped\n  && echo b\ncmd [\"sh\", \"-c\"]\n",
        )
        .unwrap();
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        let i = &d.instructions;
        assert_eq!(i.len(), 3);
        assert_eq!((i[0].line, i[0].args.clone()), (3, Args::Shell("busybox AS base".into())));
        assert_eq!(i[1].args, Args::Shell("echo a   && echo b".into()));
        assert_eq!((i[2].keyword.as_str(), i[2].line), ("CMD", 8));
        assert_eq!(i[2].args, Args::Json(vec!["sh".into(), "-c".into()]));
    }

    #[test]
    fn escape_directive_changes_continuations() {
        let d = parse("Df", "# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\n").unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(d.instructions[1].args, Args::Shell("dir c:\\   && echo".into()));
        // After an instruction, a directive-looking line is a comment.
        let d = parse("Df", "FROM x\n# escape=`\nRUN a \\\n b\n").unwrap();
        assert_eq!(d.escape, '\\');
        assert_eq!(d.instructions[1].args, Args::Shell("a  b".into()));
    }

    #[test]
    fn flags_and_heredocs() {
        let i = one(
            "COPY --from=build --chmod=755 --link <<EOF <<-'TABS' /dst/\nhello $X\nEOF\n\tliteral $Y\n\tTABS\n",
        );
        assert_eq!(i.flag("from"), Some("build"));
        assert_eq!(i.flag("link"), Some(""));
        assert_eq!(i.heredocs.len(), 2);
        assert_eq!(i.heredocs[0], Heredoc { name: "EOF".into(), content: "hello $X\n".into(), expand: true });
        assert_eq!(
            i.heredocs[1],
            Heredoc { name: "TABS".into(), content: "literal $Y\n".into(), expand: false }
        );
        let r = one("RUN <<EOF\necho 'RUN not an instruction'\nEOF\n");
        assert_eq!(r.heredocs[0].content, "echo 'RUN not an instruction'\n");
        // Quoted and <<< are not markers.
        assert!(heredoc_markers("echo '<<EOF' <<<here", '\\').is_empty());
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("ctx/Dockerfile", "FROM x\n\nFOO bar\n").unwrap_err();
        assert_eq!(e.to_string(), "ctx/Dockerfile:3: unknown instruction: FOO");
        let e = parse("D", "FROM x\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("never closed"), "{e}");
        assert!(parse("D", "FROM x\nRUN\n").unwrap_err().message.contains("requires"));
        assert!(parse("D", "# escape=x\nFROM x\n").is_err());
        assert!(parse("D", "# escape=`\n# escape=\\\nFROM x\n").is_err());
    }
}
