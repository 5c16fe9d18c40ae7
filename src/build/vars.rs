//! Variable substitution in the instructions that take it, as Docker's shell-word lexer does it:
//! `$v`, `${v}`, `${v:-word}`, `${v-word}`, `${v:+word}`, `${v+word}`, `${v:?msg}`; single quotes
//! are literal, double quotes expand, the escape character makes the next character literal.

use anyhow::{Result, bail};

pub struct Lexer {
    pub escape: char,
}

impl Lexer {
    /// One word: quotes removed, variables expanded, no splitting.
    pub fn word(&self, s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
        Ok(self.process(s, env, false)?.join(""))
    }

    /// Words split on unquoted blanks (COPY sources, EXPOSE ports, VOLUME paths…).
    pub fn words(&self, s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>> {
        self.process(s, env, true)
    }

    fn process(&self, s: &str, env: &dyn Fn(&str) -> Option<String>, split: bool) -> Result<Vec<String>> {
        let chars: Vec<char> = s.chars().collect();
        let mut words = Vec::new();
        let mut cur = String::new();
        // A word exists once something (even an empty quoted string) was written to it.
        let mut started = false;
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            if split && c.is_whitespace() {
                if started {
                    words.push(std::mem::take(&mut cur));
                    started = false;
                }
                k += 1;
                continue;
            }
            started = true;
            match c {
                '\'' => {
                    k += 1;
                    while k < chars.len() && chars[k] != '\'' {
                        cur.push(chars[k]);
                        k += 1;
                    }
                    if k >= chars.len() {
                        bail!("unexpected end of statement while looking for matching single-quote in {s:?}");
                    }
                    k += 1;
                }
                '"' => {
                    k += 1;
                    loop {
                        let Some(&d) = chars.get(k) else {
                            bail!(
                                "unexpected end of statement while looking for matching double-quote in {s:?}"
                            );
                        };
                        if d == '"' {
                            k += 1;
                            break;
                        }
                        if d == self.escape {
                            match chars.get(k + 1) {
                                Some(&n) if n == '"' || n == '$' || n == self.escape => {
                                    cur.push(n);
                                    k += 2;
                                }
                                _ => {
                                    cur.push(d);
                                    k += 1;
                                }
                            }
                            continue;
                        }
                        if d == '$' {
                            let (v, next) = self.dollar(&chars, k, env)?;
                            cur.push_str(&v);
                            k = next;
                            continue;
                        }
                        cur.push(d);
                        k += 1;
                    }
                }
                '$' => {
                    let (v, next) = self.dollar(&chars, k, env)?;
                    if split {
                        // Unquoted expansions split into words, as in a shell.
                        let mut parts = v.split(char::is_whitespace).peekable();
                        while let Some(p) = parts.next() {
                            cur.push_str(p);
                            if parts.peek().is_some() && !cur.is_empty() {
                                words.push(std::mem::take(&mut cur));
                            }
                        }
                        started = !cur.is_empty();
                    } else {
                        cur.push_str(&v);
                    }
                    k = next;
                }
                c if c == self.escape => {
                    match chars.get(k + 1) {
                        Some(&n) => cur.push(n),
                        None => cur.push(c),
                    }
                    k += 2;
                }
                c => {
                    cur.push(c);
                    k += 1;
                }
            }
        }
        if started || !split {
            words.push(cur);
        }
        Ok(words)
    }

    /// Expands the `$…` at `chars[k]`; returns the value and the index after it.
    fn dollar(
        &self,
        chars: &[char],
        k: usize,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, usize)> {
        let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut j = k + 1;
        match chars.get(j) {
            Some('{') => {
                j += 1;
                let begin = j;
                while j < chars.len() && name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[begin..j].iter().collect();
                if name.is_empty() {
                    bail!("bad substitution: empty variable name");
                }
                if chars.get(j) == Some(&'}') {
                    return Ok((env(&name).unwrap_or_default(), j + 1));
                }
                let colon = chars.get(j) == Some(&':');
                if colon {
                    j += 1;
                }
                let Some(&op) = chars.get(j) else { bail!("missing '}}' in ${{{name}") };
                j += 1;
                // The word runs to the matching brace.
                let begin = j;
                let mut depth = 1;
                while j < chars.len() {
                    match chars[j] {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        c if c == self.escape => j += 1,
                        _ => {}
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    bail!("missing '}}' in ${{{name}");
                }
                let raw: String = chars[begin..j].iter().collect();
                let value = env(&name);
                let set =
                    if colon { value.as_deref().is_some_and(|v| !v.is_empty()) } else { value.is_some() };
                let out = match op {
                    '-' => {
                        if set {
                            value.unwrap_or_default()
                        } else {
                            self.word(&raw, env)?
                        }
                    }
                    '+' => {
                        if set {
                            self.word(&raw, env)?
                        } else {
                            String::new()
                        }
                    }
                    '?' => {
                        if set {
                            value.unwrap_or_default()
                        } else {
                            let msg = self.word(&raw, env)?;
                            bail!(
                                "{name}: {}",
                                if msg.is_empty() { "is not allowed to be unset" } else { &msg }
                            );
                        }
                    }
                    other => bail!("unsupported modifier ({other}) in substitution ${{{name}…}}"),
                };
                Ok((out, j + 1))
            }
            Some(&c) if name_char(c) => {
                let begin = j;
                while j < chars.len() && name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[begin..j].iter().collect();
                Ok((env(&name).unwrap_or_default(), j))
            }
            // A lone `$` stays.
            _ => Ok(("$".to_string(), j)),
        }
    }
}

/// `K=V K2="v 2"` pairs (ENV, LABEL, ARG) with each side processed as one word; the legacy
/// `K V` form (one pair, the rest of the line the value) when `legacy` and no `=` comes first.
pub fn key_values(
    lexer: &Lexer,
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    legacy: bool,
) -> Result<Vec<(String, Option<String>)>> {
    let s = s.trim();
    let first_word_end = s.find(char::is_whitespace).unwrap_or(s.len());
    if legacy && !s[..first_word_end].contains('=') {
        let (k, v) = s.split_at(first_word_end);
        if v.trim().is_empty() {
            bail!("{k} must have two arguments");
        }
        return Ok(vec![(k.to_string(), Some(lexer.word(v.trim(), env)?))]);
    }
    // Split on unquoted blanks first, keeping quotes, then process each side.
    let mut raw_words = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    raw_words.push(std::mem::take(&mut cur));
                }
                continue;
            }
            None => {}
        }
        cur.push(c);
        if c == lexer.escape && quote != Some('\'') {
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        }
    }
    if !cur.is_empty() {
        raw_words.push(cur);
    }
    let mut out = Vec::new();
    for w in raw_words {
        match w.split_once('=') {
            Some((k, v)) => {
                if k.is_empty() {
                    bail!("invalid key-value pair {w:?}: empty key");
                }
                out.push((lexer.word(k, env)?, Some(lexer.word(v, env)?)));
            }
            None => out.push((lexer.word(&w, env)?, None)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "EMPTY" => Some(String::new()),
            "SP" => Some("x y".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutions() {
        let l = Lexer { escape: '\\' };
        let w = |s: &str| l.word(s, &env).unwrap();
        assert_eq!(w("$A/${A}b"), "a/ab");
        assert_eq!(w("${NO:-def}${EMPTY:-e}${EMPTY-f}"), "def".to_string() + "e");
        assert_eq!(w("${A:+alt}${NO:+alt}${EMPTY+set}"), "altset");
        assert_eq!(w("${NO:-${A}x}"), "ax");
        assert_eq!(w("'$A' \"$A\" \\$A"), "$A a $A");
        assert_eq!(w("cost $ 5"), "cost $ 5");
        assert!(l.word("${NO:?must be set}", &env).unwrap_err().to_string().contains("must be set"));
        assert!(l.word("${A", &env).is_err());
        assert!(l.word("'open", &env).is_err());
        assert_eq!(l.words("a \"b c\" $SP ''", &env).unwrap(), vec!["a", "b c", "x", "y", ""]);
        let tick = Lexer { escape: '`' };
        assert_eq!(tick.word("c:\\dir `$A", &env).unwrap(), "c:\\dir $A");
    }

    #[test]
    fn key_value_pairs() {
        let l = Lexer { escape: '\\' };
        let kv = key_values(&l, "X=1 Y=\"two words\" Z=${A}z W", &env, true).unwrap();
        assert_eq!(
            kv,
            vec![
                ("X".into(), Some("1".into())),
                ("Y".into(), Some("two words".into())),
                ("Z".into(), Some("az".into())),
                ("W".into(), None)
            ]
        );
        assert_eq!(
            key_values(&l, "K some $A value", &env, true).unwrap(),
            vec![("K".into(), Some("some a value".into()))]
        );
        assert_eq!(
            key_values(&l, "ESC=a\\ b", &env, true).unwrap(),
            vec![("ESC".into(), Some("a b".into()))]
        );
    }
}
