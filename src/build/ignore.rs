//! `.dockerignore`, with Docker's pattern rules: one pattern a line, `#` comments, paths cleaned
//! and taken from the context root, `*` `?` `[…]` within a path component, `**` for any number of
//! components, `!` exceptions; the last matching pattern decides, and a pattern that matches a
//! directory matches everything under it.

use anyhow::{Result, bail};

#[derive(Debug, Clone)]
struct Pattern {
    parts: Vec<String>,
    exclusion: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    pub fn parse(text: &str) -> Result<Ignore> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, p) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(p);
            if cleaned.is_empty() {
                continue;
            }
            let parts: Vec<String> = cleaned.split('/').map(str::to_string).collect();
            for part in &parts {
                if let Err(e) = component_match(part, "") {
                    bail!(".dockerignore line {}: bad pattern {line:?}: {e}", n + 1);
                }
            }
            patterns.push(Pattern { parts, exclusion });
        }
        Ok(Ignore { patterns })
    }

    /// Whether a context path (relative, `/`-separated) is left out.
    pub fn excludes(&self, path: &str) -> bool {
        let path = clean(path);
        if path.is_empty() {
            return false;
        }
        let comps: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for p in &self.patterns {
            // The path or any of its parents.
            let hit = (1..=comps.len()).any(|n| parts_match(&p.parts, &comps[..n]));
            if hit {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether some exception could re-include something under an excluded directory, so that a
    /// walk must still look inside it.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// Go's filepath.Clean on a `/` path, made relative (a leading `/` names the context root).
pub(crate) fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

fn parts_match(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| parts_match(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((p, prest)) => component_match(first, p).unwrap_or(false) && parts_match(rest, prest),
            None => false,
        },
    }
}

/// Go's path.Match for one component: `*`, `?`, `[a-z]`, `[^…]`, `\` escapes.
fn component_match(pattern: &str, name: &str) -> Result<bool, &'static str> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Validate classes first so a bad pattern is an error whatever the name.
    let mut k = 0;
    while k < p.len() {
        match p[k] {
            '\\' => k += 2,
            '[' => {
                let end = p[k + 1..].iter().position(|c| *c == ']').ok_or("unclosed [")?;
                k += end + 2;
            }
            _ => k += 1,
        }
    }
    Ok(glob(&p, &n))
}

fn glob(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| glob(&p[1..], &n[i..])),
        Some('?') => !n.is_empty() && glob(&p[1..], &n[1..]),
        Some('[') => {
            let Some(end) = p[1..].iter().position(|c| *c == ']').map(|e| e + 1) else { return false };
            let Some(&c) = n.first() else { return false };
            let mut class = &p[1..end];
            let negate = matches!(class.first(), Some('^' | '!'));
            if negate {
                class = &class[1..];
            }
            class_matches(class, c) != negate && glob(&p[end + 1..], &n[1..])
        }
        Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && glob(&p[2..], &n[1..]),
        Some(c) => n.first() == Some(c) && glob(&p[1..], &n[1..]),
    }
}

/// A COPY source glob against one path component (same rules, shared with `.dockerignore`).
pub fn glob_component(pattern: &str, name: &str) -> bool {
    component_match(pattern, name).unwrap_or(false)
}

pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Whether `c` is in a bracket class's body (`a-z0-9_`, without the brackets and negation), as
/// Go's path.Match reads it; shared with `images`' reference patterns.
pub(crate) fn class_matches(class: &[char], c: char) -> bool {
    let mut i = 0;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == '-' {
            if class[i] <= c && c <= class[i + 2] {
                return true;
            }
            i += 3;
        } else {
            if class[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_rules() {
        let i =
            Ignore::parse("# comment\n*.md\n!README.md\n/tmp\n**/*.log\nbuild/**/out\n[ab]?.txt\n").unwrap();
        assert!(i.excludes("x.md"));
        assert!(!i.excludes("README.md"));
        assert!(!i.excludes("docs/x.md"), "* does not cross directories");
        assert!(i.excludes("tmp/a/b"), "a matched directory excludes what is under it");
        assert!(i.excludes("a.log") && i.excludes("deep/er/a.log"));
        assert!(i.excludes("build/out") && i.excludes("build/x/y/out/z"));
        assert!(i.excludes("a1.txt") && !i.excludes("c1.txt"));
        assert!(!i.excludes("src/main.rs"));
        let last_wins = Ignore::parse("!keep\n*\n").unwrap();
        assert!(last_wins.excludes("keep"));
        let reinclude = Ignore::parse("dir\n!dir/keep\n").unwrap();
        assert!(reinclude.excludes("dir/x") && !reinclude.excludes("dir/keep"));
        assert!(Ignore::parse("[abc\n").is_err());
    }
}
