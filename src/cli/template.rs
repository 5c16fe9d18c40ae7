//! Go `text/template` as `docker inspect -f` uses it, over a JSON document: `{{.Config.Env}}`,
//! `{{json .Config}}`, `{{index .RepoTags 0}}`, `{{len .RootFS.Layers}}`, `{{join .RepoTags ","}}`,
//! `{{range .RepoTags}}{{.}} {{end}}`, `{{if .Parent}}…{{else}}…{{end}}`, `{{lower .Os}}`,
//! `{{upper …}}`, `{{println …}}`. Values print as Go prints them (`[a b]`, `map[k:v]`,
//! `<no value>` for a missing key).

use anyhow::{Context, Result};
use serde_json::Value;

use super::output::usage_bail;

/// A parsed template.
pub struct Template {
    nodes: Vec<Node>,
}

enum Node {
    Text(String),
    Action(Pipe),
    Range(Pipe, Vec<Node>),
    If(Pipe, Vec<Node>, Vec<Node>),
}

/// A function applied to arguments; a bare argument is `Pipe { func: None, args: [it] }`.
struct Pipe {
    func: Option<String>,
    args: Vec<Arg>,
}

enum Arg {
    /// `.A.B` (empty path: `.`).
    Path(Vec<String>),
    Str(String),
    Int(i64),
}

const FUNCS: &[&str] = &["json", "index", "len", "join", "lower", "upper", "println", "print", "title"];

impl Template {
    pub fn parse(spec: &str) -> Result<Template> {
        let mut tokens = tokenize(spec)?.into_iter().peekable();
        let (nodes, end) = parse_nodes(&mut tokens, spec)?;
        if let Some(e) = end {
            usage_bail!("invalid --format {spec:?}: unexpected {{{{{e}}}}}");
        }
        Ok(Template { nodes })
    }

    pub fn render(&self, doc: &Value) -> Result<String> {
        let mut out = String::new();
        render(&self.nodes, doc, &mut out)?;
        Ok(out)
    }
}

enum Token {
    Text(String),
    Action(String),
}

fn tokenize(spec: &str) -> Result<Vec<Token>> {
    let mut out = Vec::new();
    let mut rest = spec;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Token::Text(rest[..start].to_string()));
        }
        let Some(len) = rest[start..].find("}}") else {
            usage_bail!("invalid --format {spec:?}: unclosed {{{{")
        };
        out.push(Token::Action(rest[start + 2..start + len].trim().to_string()));
        rest = &rest[start + len + 2..];
    }
    if !rest.is_empty() {
        out.push(Token::Text(rest.to_string()));
    }
    Ok(out)
}

type Tokens = std::iter::Peekable<std::vec::IntoIter<Token>>;

/// Nodes up to an `end` or `else` (returned) or the end of input.
fn parse_nodes(tokens: &mut Tokens, spec: &str) -> Result<(Vec<Node>, Option<String>)> {
    let mut nodes = Vec::new();
    while let Some(t) = tokens.next() {
        match t {
            Token::Text(s) => nodes.push(Node::Text(s)),
            Token::Action(a) if a == "end" || a == "else" => return Ok((nodes, Some(a))),
            Token::Action(a) => {
                if let Some(p) = a.strip_prefix("range ") {
                    let (body, end) = parse_nodes(tokens, spec)?;
                    if end.as_deref() != Some("end") {
                        usage_bail!("invalid --format {spec:?}: {{{{range}}}} without {{{{end}}}}");
                    }
                    nodes.push(Node::Range(parse_pipe(p, spec)?, body));
                } else if let Some(p) = a.strip_prefix("if ") {
                    let (then, end) = parse_nodes(tokens, spec)?;
                    let otherwise = match end.as_deref() {
                        Some("end") => Vec::new(),
                        Some("else") => match parse_nodes(tokens, spec)? {
                            (o, Some(e)) if e == "end" => o,
                            _ => usage_bail!("invalid --format {spec:?}: {{{{else}}}} without {{{{end}}}}"),
                        },
                        _ => usage_bail!("invalid --format {spec:?}: {{{{if}}}} without {{{{end}}}}"),
                    };
                    nodes.push(Node::If(parse_pipe(p, spec)?, then, otherwise));
                } else {
                    nodes.push(Node::Action(parse_pipe(&a, spec)?));
                }
            }
        }
    }
    Ok((nodes, None))
}

fn parse_pipe(action: &str, spec: &str) -> Result<Pipe> {
    let words = split_words(action, spec)?;
    let Some(first) = words.first() else { usage_bail!("invalid --format {spec:?}: empty {{{{}}}}") };
    let (func, rest) = if first.starts_with('.') || first.starts_with('"') {
        (None, &words[..])
    } else if FUNCS.contains(&first.as_str()) {
        (Some(first.clone()), &words[1..])
    } else {
        usage_bail!("invalid --format {spec:?}: unknown function {first:?} (known: {})", FUNCS.join(", "))
    };
    let args = rest.iter().map(|w| parse_arg(w, spec)).collect::<Result<Vec<_>>>()?;
    if func.is_none() && args.len() != 1 {
        usage_bail!("invalid --format {spec:?}: {{{{{action}}}}} is not a field");
    }
    Ok(Pipe { func, args })
}

/// Words split on blanks, keeping "quoted strings" whole.
fn split_words(s: &str, spec: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            let mut w = String::from('"');
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => w.push(chars.next().unwrap_or('\\')),
                    Some(c) => w.push(c),
                    None => usage_bail!("invalid --format {spec:?}: unterminated string"),
                }
            }
            words.push(w);
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek().filter(|c| !c.is_whitespace()) {
                w.push(c);
                chars.next();
            }
            words.push(w);
        }
    }
    Ok(words)
}

fn parse_arg(w: &str, spec: &str) -> Result<Arg> {
    if let Some(s) = w.strip_prefix('"') {
        return Ok(Arg::Str(s.to_string()));
    }
    if w == "." {
        return Ok(Arg::Path(Vec::new()));
    }
    if let Some(path) = w.strip_prefix('.') {
        return Ok(Arg::Path(path.split('.').map(str::to_string).collect()));
    }
    match w.parse() {
        Ok(n) => Ok(Arg::Int(n)),
        Err(_) => usage_bail!("invalid --format {spec:?}: {w:?} is not a field, string or number"),
    }
}

fn render(nodes: &[Node], dot: &Value, out: &mut String) -> Result<()> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&go_string(&eval(p, dot)?)),
            Node::Range(p, body) => match eval(p, dot)? {
                Value::Array(items) => {
                    for item in &items {
                        render(body, item, out)?;
                    }
                }
                Value::Object(map) => {
                    for v in map.values() {
                        render(body, v, out)?;
                    }
                }
                Value::Null => {}
                other => anyhow::bail!("cannot range over {}", go_string(&other)),
            },
            Node::If(p, then, otherwise) => {
                let branch = if truthy(&eval(p, dot)?) { then } else { otherwise };
                render(branch, dot, out)?;
            }
        }
    }
    Ok(())
}

fn eval(p: &Pipe, dot: &Value) -> Result<Value> {
    let args: Vec<Value> = p
        .args
        .iter()
        .map(|a| match a {
            Arg::Path(path) => path.iter().try_fold(dot, |v, k| v.get(k)).cloned().unwrap_or(Value::Null),
            Arg::Str(s) => Value::String(s.clone()),
            Arg::Int(n) => Value::from(*n),
        })
        .collect();
    let Some(func) = &p.func else { return Ok(args.into_iter().next().unwrap_or(Value::Null)) };
    let one = || args.first().cloned().context(format!("{func} needs an argument"));
    Ok(match func.as_str() {
        "json" => Value::String(serde_json::to_string(&one()?)?),
        "len" => Value::from(match one()? {
            Value::Array(a) => a.len(),
            Value::Object(m) => m.len(),
            Value::String(s) => s.len(),
            Value::Null => 0,
            other => anyhow::bail!("len of {}", go_string(&other)),
        }),
        "index" => {
            let mut v = one()?;
            for key in &args[1..] {
                v = match (&v, key) {
                    (Value::Array(a), Value::Number(n)) => {
                        let i = n.as_u64().context("index: negative index")? as usize;
                        a.get(i)
                            .cloned()
                            .with_context(|| format!("index {i} out of range ({} items)", a.len()))?
                    }
                    (Value::Object(m), Value::String(k)) => m.get(k).cloned().unwrap_or(Value::Null),
                    _ => anyhow::bail!("cannot index {} with {}", go_string(&v), go_string(key)),
                };
            }
            v
        }
        "join" => {
            let sep = args.get(1).map(go_string).unwrap_or_default();
            let items = match one()? {
                Value::Array(a) => a.iter().map(go_string).collect::<Vec<_>>(),
                other => vec![go_string(&other)],
            };
            Value::String(items.join(&sep))
        }
        "lower" => Value::String(go_string(&one()?).to_lowercase()),
        "upper" => Value::String(go_string(&one()?).to_uppercase()),
        "title" => {
            let s = go_string(&one()?);
            let mut c = s.chars();
            Value::String(c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default())
        }
        "print" => Value::String(args.iter().map(go_string).collect::<Vec<_>>().join(" ")),
        _ => Value::String(args.iter().map(go_string).collect::<Vec<_>>().join(" ") + "\n"),
    })
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// A value as Go's `fmt.Print` shows what `encoding/json` decoded.
fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_string).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys.iter().map(|k| format!("{k}:{}", go_string(&m[*k]))).collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Template;

    fn render(t: &str, v: &serde_json::Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    #[test]
    fn go_templates_over_json() {
        let v = json!({"Id": "sha256:ab", "RepoTags": ["a:1", "b:2"], "Config": {"Env": ["X=1"], "Labels": null},
            "Size": 1234, "Os": "linux", "Parent": ""});
        assert_eq!(render("{{.Id}}", &v), "sha256:ab");
        assert_eq!(render("{{.RepoTags}}", &v), "[a:1 b:2]");
        assert_eq!(render("{{json .Config.Env}}", &v), r#"["X=1"]"#);
        assert_eq!(render("{{.Config}}", &v), "map[Env:[X=1] Labels:<no value>]");
        assert_eq!(render("{{index .RepoTags 1}}", &v), "b:2");
        assert_eq!(render("{{len .RepoTags}} {{.Size}}", &v), "2 1234");
        assert_eq!(render(r#"{{join .RepoTags ","}}"#, &v), "a:1,b:2");
        assert_eq!(render("{{range .RepoTags}}<{{.}}>{{end}}", &v), "<a:1><b:2>");
        assert_eq!(render("{{if .Parent}}p{{else}}no parent{{end}} {{upper .Os}}", &v), "no parent LINUX");
        assert_eq!(render("{{.Missing}}", &v), "<no value>");
        assert!(Template::parse("{{.Id").is_err());
        assert!(Template::parse("{{range .RepoTags}}").is_err());
        assert!(Template::parse("{{frobnicate .Id}}").is_err());
    }
}
