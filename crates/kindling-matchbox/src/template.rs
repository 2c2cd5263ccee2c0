//! The subset of Go's `text/template` that matchbox's templates use, parsed once and rendered
//! per request.
//!
//! matchbox renders Butane and generic templates with `text/template` and
//! `Option("missingkey=error")`, over a map of the group's metadata, its selectors and the
//! request (see [`crate::template_vars`]). Its examples and docs use:
//!
//! - `{{.key}}`, `{{.request.query.foo}}`, `{{.request.raw_query}}`: print a value; a missing key
//!   is an error, as `missingkey=error` makes it;
//! - `{{if .x}}…{{else if .y}}…{{else}}…{{end}}`, with Go's truth (false, 0, "", empty lists and
//!   maps, and null are false);
//! - `{{range .list}}…{{.}}…{{end}}` and `{{range $element := .list}}…{{$element}}…{{end}}`
//!   (also `$i, $e :=`, and `{{else}}` for an empty list); maps are walked in key order;
//! - `{{index . "key"}}` and `{{index .list 0}}`: like a field, but a missing map key gives null
//!   instead of an error, which is how the examples test for optional metadata
//!   (`{{if index . "ssh_authorized_keys"}}`);
//! - `{{/* comments */}}` and the `{{-`/`-}}` whitespace trim markers.
//!
//! Everything else (functions such as `printf` or `eq`, pipelines, parentheses, `with`,
//! `define`, variable assignment) is refused when the template is loaded, with the file, the
//! line and what was found. Printing a list, an object or null is refused at render time, where
//! Go would print `[a b]`, `map[…]` or `<no value>` into the config. Numbers print as JSON wrote
//! them (`1000000`, `1.0`), where matchbox prints Go `float64`s (`1e+06`, `1`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::decode::json_kind;

/// What a template file is, and so how `/ignition` or `/generic` serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// An `ignition/` file ending in `.ign` or `.ignition`: raw Ignition JSON. matchbox does not
    /// template these; [`render`] returns them unchanged.
    Ignition,
    /// Any other `ignition/` file: a Butane config template. After [`render`] it still has to
    /// be translated to Ignition.
    Butane,
    /// A `generic/` file: a template for any text.
    Generic,
}

impl TemplateKind {
    /// The kind of the `ignition/` file `name`, by its extension, as matchbox's `isIgnition`.
    pub fn of_ignition_file(name: &str) -> TemplateKind {
        if name.ends_with(".ign") || name.ends_with(".ignition") {
            TemplateKind::Ignition
        } else {
            TemplateKind::Butane
        }
    }
}

/// A template file, parsed.
#[derive(Debug, Clone)]
pub struct Template {
    id: String,
    path: PathBuf,
    kind: TemplateKind,
    source: String,
    nodes: Vec<Node>,
}

/// Why a template could not be parsed or rendered: the file, the line of the action, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct TemplateError {
    /// The template's file.
    pub file: PathBuf,
    /// The 1-based line the offending `{{…}}` starts on.
    pub line: usize,
    /// What is wrong, naming the action.
    pub message: String,
}

impl Template {
    /// Parses `source`, read from `path`, as a template of `kind`. `id` is the name profiles use
    /// for it (`ignition_id`, `generic_id`). Raw Ignition is not parsed.
    pub fn parse(
        id: impl Into<String>,
        path: impl Into<PathBuf>,
        kind: TemplateKind,
        source: String,
    ) -> Result<Template, TemplateError> {
        let path = path.into();
        let nodes = match kind {
            TemplateKind::Ignition => Vec::new(),
            TemplateKind::Butane | TemplateKind::Generic => {
                parse_nodes(&source).map_err(|(line, message)| TemplateError {
                    file: path.clone(),
                    line,
                    message,
                })?
            }
        };
        Ok(Template {
            id: id.into(),
            path,
            kind,
            source,
            nodes,
        })
    }

    /// The name profiles refer to this template by.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The file the template was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the template is.
    pub fn kind(&self) -> TemplateKind {
        self.kind
    }

    /// The template's text as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Renders `template` with `vars` (usually [`crate::template_vars`]). Raw Ignition comes back
/// unchanged, as matchbox serves it without templating.
pub fn render(template: &Template, vars: &Value) -> Result<String, TemplateError> {
    if template.kind == TemplateKind::Ignition {
        return Ok(template.source.clone());
    }
    let mut out = String::with_capacity(template.source.len());
    let mut vars_in_scope = Vec::new();
    let mut budget = MAX_STEPS;
    exec(
        &template.nodes,
        vars,
        vars,
        &mut vars_in_scope,
        &mut out,
        &mut budget,
    )
    .map_err(|(line, message)| TemplateError {
        file: template.path.clone(),
        line,
        message,
    })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Syntax tree

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Print {
        action: Action,
        expr: Expr,
    },
    If {
        action: Action,
        cond: Expr,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        action: Action,
        key_var: Option<String>,
        value_var: Option<String>,
        over: Expr,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

/// Where an action is, and how it was written, for messages.
#[derive(Debug, Clone)]
struct Action {
    line: usize,
    text: String,
}

#[derive(Debug, Clone)]
enum Expr {
    /// `.a.b` (base Dot), `$.a` (base Root), `$x.a` (base Var).
    Path {
        base: Base,
        path: Vec<String>,
    },
    Index {
        target: Box<Expr>,
        keys: Vec<Expr>,
    },
    Str(String),
    Int(i64),
}

#[derive(Debug, Clone)]
enum Base {
    Dot,
    Root,
    Var(String),
}

// ---------------------------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `.` on its own.
    Dot,
    /// `.a.b`
    Field(Vec<String>),
    /// `$` (empty name) or `$x`, with an optional `.a.b` after it.
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Int(i64),
    Declare,
    Assign,
    Comma,
    Pipe,
    Paren,
    Other(char),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Dot => f.write_str("."),
            Tok::Field(p) => write!(f, ".{}", p.join(".")),
            Tok::Var(n, p) if p.is_empty() => write!(f, "${n}"),
            Tok::Var(n, p) => write!(f, "${n}.{}", p.join(".")),
            Tok::Ident(s) => f.write_str(s),
            Tok::Str(s) => write!(f, "{s:?}"),
            Tok::Int(i) => write!(f, "{i}"),
            Tok::Declare => f.write_str(":="),
            Tok::Assign => f.write_str("="),
            Tok::Comma => f.write_str(","),
            Tok::Pipe => f.write_str("|"),
            Tok::Paren => f.write_str("("),
            Tok::Other(c) => write!(f, "{c}"),
        }
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// One piece of the template before the tree is built.
enum Item {
    Text(String),
    Action { action: Action, toks: Vec<Tok> },
}

type SyntaxError = (usize, String);

const SUPPORTED: &str =
    "kindling supports {{.key}}, {{$var}}, {{index}}, {{if}}/{{else}}/{{end}} and {{range}}";

/// Splits `src` into text and actions, applying trim markers and dropping comments.
fn lex(src: &str) -> Result<Vec<Item>, SyntaxError> {
    let mut items = Vec::new();
    let mut pos = 0;
    let mut line = 1;
    let mut trim_next = false;
    while let Some(found) = src[pos..].find("{{") {
        let start = pos + found;
        let mut text = &src[pos..start];
        if trim_next {
            text = text.trim_start_matches(is_space);
        }
        let mut inner = start + 2;
        let trim_left =
            src[inner..].starts_with('-') && src[inner + 1..].chars().next().is_some_and(is_space);
        if trim_left {
            text = text.trim_end_matches(is_space);
            inner += 1;
        }
        line += src[pos..start].matches('\n').count();
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        let (toks, end, trim_right) = lex_action(src, inner, line)?;
        let text = src[start..end].to_string();
        if !toks.is_empty() {
            items.push(Item::Action {
                action: Action { line, text },
                toks,
            });
        }
        line += src[start..end].matches('\n').count();
        pos = end;
        trim_next = trim_right;
    }
    let mut rest = &src[pos..];
    if trim_next {
        rest = rest.trim_start_matches(is_space);
    }
    if !rest.is_empty() {
        items.push(Item::Text(rest.to_string()));
    }
    Ok(items)
}

/// Reads the action starting at byte `at` (just after `{{` and any left trim marker). Returns its
/// tokens (none for a comment), the byte after its `}}`, and whether it ends with `-}}`.
fn lex_action(src: &str, at: usize, line: usize) -> Result<(Vec<Tok>, usize, bool), SyntaxError> {
    let unclosed = || (line, "unclosed action: no `}}` after this `{{`".to_string());
    let mut toks = Vec::new();
    let bytes = src.as_bytes();
    let mut i = at;
    loop {
        let rest = &src[i..];
        let c = rest.chars().next().ok_or_else(unclosed)?;
        if rest.starts_with("}}") {
            return Ok((toks, i + 2, false));
        }
        if is_space(c) {
            let after = rest.trim_start_matches(is_space);
            if after.starts_with("-}}") {
                return Ok((toks, src.len() - after.len() + 3, true));
            }
            i = src.len() - after.len();
            continue;
        }
        if rest.starts_with("/*") {
            if !toks.is_empty() {
                return Err((
                    line,
                    "a comment must be the whole action: {{/* … */}}".into(),
                ));
            }
            let close = rest.find("*/").ok_or_else(|| {
                (
                    line,
                    "unclosed comment: no `*/` after this `/*`".to_string(),
                )
            })?;
            let after = &rest[close + 2..];
            let trimmed = after.trim_start_matches(is_space);
            if trimmed.starts_with("-}}") && trimmed.len() < after.len() {
                return Ok((Vec::new(), src.len() - trimmed.len() + 3, true));
            }
            if let Some(stripped) = after.strip_prefix("}}") {
                return Ok((Vec::new(), src.len() - stripped.len(), false));
            }
            return Err((line, "a comment must end with `*/}}`".into()));
        }
        match c {
            '.' => {
                let (path, len) = lex_path(&rest[1..]);
                if path.is_empty() {
                    if rest[1..].chars().next().is_some_and(|c| c.is_ascii_digit()) {
                        return Err((
                            line,
                            format!("numbers other than integers are not supported; {SUPPORTED}"),
                        ));
                    }
                    toks.push(Tok::Dot);
                    i += 1;
                } else {
                    toks.push(Tok::Field(path));
                    i += 1 + len;
                }
            }
            '$' => {
                let name_len: usize = rest[1..]
                    .chars()
                    .take_while(|&c| is_ident_char(c))
                    .map(char::len_utf8)
                    .sum();
                let name = rest[1..1 + name_len].to_string();
                let after_name = &rest[1 + name_len..];
                let (path, len) = if let Some(after_dot) = after_name.strip_prefix('.') {
                    lex_path(after_dot)
                } else {
                    (Vec::new(), 0)
                };
                let consumed = 1 + name_len + if path.is_empty() { 0 } else { 1 + len };
                toks.push(Tok::Var(name, path));
                i += consumed;
            }
            '"' => {
                let (s, len) = lex_string(&rest[1..]).map_err(|m| (line, m))?;
                toks.push(Tok::Str(s));
                i += 1 + len;
            }
            '`' => {
                let close = rest[1..]
                    .find('`')
                    .ok_or_else(|| (line, "unterminated raw string".to_string()))?;
                toks.push(Tok::Str(rest[1..1 + close].to_string()));
                i += close + 2;
            }
            ':' if rest.starts_with(":=") => {
                toks.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            '(' | ')' => {
                toks.push(Tok::Paren);
                i += 1;
            }
            c if c.is_ascii_digit()
                || (c == '-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                let len = 1 + rest[1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
                    .count();
                let n = rest[..len].parse::<i64>().map_err(|_| {
                    (
                        line,
                        format!(
                            "`{}`: only decimal integers are supported as numbers",
                            &rest[..len]
                        ),
                    )
                })?;
                toks.push(Tok::Int(n));
                i += len;
            }
            c if is_ident_char(c) => {
                let len: usize = rest
                    .chars()
                    .take_while(|&c| is_ident_char(c))
                    .map(char::len_utf8)
                    .sum();
                toks.push(Tok::Ident(rest[..len].to_string()));
                i += len;
            }
            other => {
                toks.push(Tok::Other(other));
                i += other.len_utf8();
            }
        }
    }
}

/// Reads `a.b.c` (after a leading `.`): the segments and the bytes consumed.
fn lex_path(s: &str) -> (Vec<String>, usize) {
    let mut path = Vec::new();
    let mut consumed = 0;
    let mut rest = s;
    loop {
        let len: usize = rest
            .chars()
            .take_while(|&c| is_ident_char(c))
            .map(char::len_utf8)
            .sum();
        if len == 0 {
            if !path.is_empty() {
                consumed -= 1;
            }
            break;
        }
        path.push(rest[..len].to_string());
        consumed += len;
        rest = &rest[len..];
        match rest.strip_prefix('.') {
            Some(after) if after.chars().next().is_some_and(is_ident_char) => {
                rest = after;
                consumed += 1;
            }
            _ => break,
        }
    }
    (path, consumed)
}

/// Reads a Go interpreted string after its opening quote: the value and the bytes consumed,
/// closing quote included.
fn lex_string(s: &str) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\n' => break,
            '\\' => match chars.next().map(|(_, e)| e) {
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(e) => return Err(format!("string escape `\\{e}` is not supported")),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// How a list of nodes ended.
enum Closer {
    Eof,
    End(Action),
    Else(Action),
    ElseIf(Action, Expr),
}

/// Lexes and parses a whole template.
fn parse_nodes(src: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut parser = Parser {
        items: lex(src)?.into_iter(),
        scope: Vec::new(),
    };
    parser.parse()
}

struct Parser {
    items: std::vec::IntoIter<Item>,
    /// Variables in scope, innermost last; `$` is always in scope.
    scope: Vec<String>,
}

impl Parser {
    fn parse(&mut self) -> Result<Vec<Node>, SyntaxError> {
        let (nodes, end) = self.list()?;
        match end {
            Closer::Eof => Ok(nodes),
            Closer::End(a) => Err((
                a.line,
                format!("`{}` without an {{{{if}}}} or {{{{range}}}} to end", a.text),
            )),
            Closer::Else(a) | Closer::ElseIf(a, _) => Err((
                a.line,
                format!("`{}` without an {{{{if}}}} or {{{{range}}}}", a.text),
            )),
        }
    }

    fn list(&mut self) -> Result<(Vec<Node>, Closer), SyntaxError> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            let (action, toks) = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action { action, toks } => (action, toks),
            };
            let line = action.line;
            match toks.first() {
                Some(Tok::Ident(word)) if word == "end" => {
                    if toks.len() > 1 {
                        return Err((line, format!("`{}`: nothing may follow `end`", action.text)));
                    }
                    return Ok((nodes, Closer::End(action)));
                }
                Some(Tok::Ident(word)) if word == "else" => {
                    return match toks.get(1) {
                        None => Ok((nodes, Closer::Else(action))),
                        Some(Tok::Ident(w)) if w == "if" => {
                            let cond = self.expr(&toks[2..], &action)?;
                            Ok((nodes, Closer::ElseIf(action, cond)))
                        }
                        Some(_) => Err((
                            line,
                            format!(
                                "`{}`: only {{{{else}}}} and {{{{else if …}}}} are supported; {SUPPORTED}",
                                action.text
                            ),
                        )),
                    };
                }
                Some(Tok::Ident(word)) if word == "if" => {
                    let cond = self.expr(&toks[1..], &action)?;
                    nodes.push(self.if_rest(action, cond)?);
                }
                Some(Tok::Ident(word)) if word == "range" => {
                    nodes.push(self.range(action, &toks[1..])?);
                }
                Some(Tok::Ident(word))
                    if matches!(
                        word.as_str(),
                        "with" | "define" | "template" | "block" | "break" | "continue"
                    ) =>
                {
                    return Err((
                        line,
                        format!(
                            "`{}`: the `{word}` action is not supported; {SUPPORTED}",
                            action.text
                        ),
                    ));
                }
                Some(Tok::Var(_, path))
                    if path.is_empty()
                        && matches!(toks.get(1), Some(Tok::Declare | Tok::Assign)) =>
                {
                    return Err((
                        line,
                        format!(
                            "`{}`: variables can only be declared in {{{{range $x := …}}}}; {SUPPORTED}",
                            action.text
                        ),
                    ));
                }
                _ => {
                    let expr = self.expr(&toks, &action)?;
                    nodes.push(Node::Print { action, expr });
                }
            }
        }
        Ok((nodes, Closer::Eof))
    }

    /// Parses the rest of an `if` whose condition has been read.
    fn if_rest(&mut self, action: Action, cond: Expr) -> Result<Node, SyntaxError> {
        let (then, end) = self.list()?;
        let otherwise = match end {
            Closer::End(_) => Vec::new(),
            Closer::Else(_) => {
                let (otherwise, end) = self.list()?;
                match end {
                    Closer::End(_) => otherwise,
                    Closer::Eof => return Err(unclosed(&action)),
                    Closer::Else(a) | Closer::ElseIf(a, _) => {
                        return Err((
                            a.line,
                            format!(
                                "`{}` after the {{{{else}}}} of `{}` on line {}",
                                a.text, action.text, action.line
                            ),
                        ));
                    }
                }
            }
            Closer::ElseIf(else_action, cond) => vec![self.if_rest(else_action, cond)?],
            Closer::Eof => return Err(unclosed(&action)),
        };
        Ok(Node::If {
            action,
            cond,
            then,
            otherwise,
        })
    }

    fn range(&mut self, action: Action, toks: &[Tok]) -> Result<Node, SyntaxError> {
        let line = action.line;
        let (key_var, value_var, rest) = match toks {
            [Tok::Var(v, p), Tok::Declare, rest @ ..] if p.is_empty() && !v.is_empty() => {
                (None, Some(v.clone()), rest)
            }
            [
                Tok::Var(k, kp),
                Tok::Comma,
                Tok::Var(v, vp),
                Tok::Declare,
                rest @ ..,
            ] if kp.is_empty() && vp.is_empty() && !k.is_empty() && !v.is_empty() => {
                (Some(k.clone()), Some(v.clone()), rest)
            }
            [Tok::Var(..), Tok::Comma | Tok::Declare | Tok::Assign, ..] => {
                return Err((
                    line,
                    format!(
                        "`{}`: write {{{{range $x := .list}}}} or {{{{range $i, $x := .list}}}}",
                        action.text
                    ),
                ));
            }
            rest => (None, None, rest),
        };
        let over = self.expr(rest, &action)?;
        let declared = key_var.iter().chain(value_var.iter()).count();
        self.scope.extend(key_var.iter().cloned());
        self.scope.extend(value_var.iter().cloned());
        let body = self.list();
        self.scope.truncate(self.scope.len() - declared);
        let (body, end) = body?;
        let otherwise = match end {
            Closer::End(_) => Vec::new(),
            Closer::Else(_) => {
                let (otherwise, end) = self.list()?;
                match end {
                    Closer::End(_) => otherwise,
                    Closer::Eof => return Err(unclosed(&action)),
                    Closer::Else(a) | Closer::ElseIf(a, _) => {
                        return Err((
                            a.line,
                            format!(
                                "`{}` after the {{{{else}}}} of `{}` on line {}",
                                a.text, action.text, action.line
                            ),
                        ));
                    }
                }
            }
            Closer::ElseIf(a, _) => {
                return Err((
                    a.line,
                    format!(
                        "`{}`: {{{{else if}}}} inside {{{{range}}}} is not supported",
                        a.text
                    ),
                ));
            }
            Closer::Eof => return Err(unclosed(&action)),
        };
        Ok(Node::Range {
            action,
            key_var,
            value_var,
            over,
            body,
            otherwise,
        })
    }

    /// Parses an expression: one operand, or `index` and its operands.
    fn expr(&self, toks: &[Tok], action: &Action) -> Result<Expr, SyntaxError> {
        let line = action.line;
        let refuse = |what: String| Err((line, format!("`{}`: {what}; {SUPPORTED}", action.text)));
        if toks.contains(&Tok::Pipe) {
            return refuse("pipelines (`|`) are not supported".into());
        }
        if toks.contains(&Tok::Paren) {
            return refuse("parentheses are not supported".into());
        }
        match toks {
            [] => refuse("an expression is missing".into()),
            [Tok::Ident(f), args @ ..] if f == "index" => {
                if args.len() < 2 {
                    return refuse("`index` needs a value and at least one key".into());
                }
                let target = self.operand(&args[0], action)?;
                let keys = args[1..]
                    .iter()
                    .map(|t| self.operand(t, action))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Expr::Index {
                    target: Box::new(target),
                    keys,
                })
            }
            [Tok::Ident(f), ..] => refuse(format!("the function `{f}` is not supported")),
            [one] => self.operand(one, action),
            [first, second, ..] => refuse(format!(
                "`{second}` after `{first}`: only functions take arguments"
            )),
        }
    }

    fn operand(&self, tok: &Tok, action: &Action) -> Result<Expr, SyntaxError> {
        let line = action.line;
        match tok {
            Tok::Dot => Ok(Expr::Path {
                base: Base::Dot,
                path: Vec::new(),
            }),
            Tok::Field(path) => Ok(Expr::Path {
                base: Base::Dot,
                path: path.clone(),
            }),
            Tok::Var(name, path) if name.is_empty() => Ok(Expr::Path {
                base: Base::Root,
                path: path.clone(),
            }),
            Tok::Var(name, path) => {
                if !self.scope.iter().any(|v| v == name) {
                    return Err((
                        line,
                        format!("`{}`: undefined variable `${name}`", action.text),
                    ));
                }
                Ok(Expr::Path {
                    base: Base::Var(name.clone()),
                    path: path.clone(),
                })
            }
            Tok::Str(s) => Ok(Expr::Str(s.clone())),
            Tok::Int(n) => Ok(Expr::Int(*n)),
            Tok::Ident(f) => Err((
                line,
                format!(
                    "`{}`: the function `{f}` is not supported; {SUPPORTED}",
                    action.text
                ),
            )),
            other => Err((
                line,
                format!("`{}`: unexpected `{other}`; {SUPPORTED}", action.text),
            )),
        }
    }
}

fn unclosed(action: &Action) -> SyntaxError {
    (
        action.line,
        format!("`{}` is never closed with {{{{end}}}}", action.text),
    )
}

// ---------------------------------------------------------------------------------------------
// Rendering

type RenderError = (usize, String);

/// The most `{{range}}` steps one rendering may take (each entry a range lists, and each time
/// its body runs), and the most bytes it may write: a range nested in itself (`{{range $}}`
/// within `{{range $}}`) multiplies its work by the size of what it ranges over at every level,
/// and a request must not wait on it for ever.
const MAX_STEPS: u64 = 100_000;
const MAX_OUTPUT: usize = 64 << 20;

fn exec(
    nodes: &[Node],
    root: &Value,
    dot: &Value,
    vars: &mut Vec<(String, Value)>,
    out: &mut String,
    budget: &mut u64,
) -> Result<(), RenderError> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Print { action, expr } => {
                let value = eval(expr, root, dot, vars).map_err(|m| fail(action, m))?;
                print(&value, out).map_err(|m| fail(action, m))?;
            }
            Node::If {
                action,
                cond,
                then,
                otherwise,
            } => {
                let value = eval(cond, root, dot, vars).map_err(|m| fail(action, m))?;
                let branch = if truthy(&value) { then } else { otherwise };
                exec(branch, root, dot, vars, out, budget)?;
            }
            Node::Range {
                action,
                key_var,
                value_var,
                over,
                body,
                otherwise,
            } => {
                let target = eval(over, root, dot, vars)
                    .map_err(|m| fail(action, m))?
                    .into_owned();
                let entries: Vec<(Value, &Value)> = match &target {
                    Value::Array(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (Value::from(i), v))
                        .collect(),
                    Value::Object(map) => map
                        .iter()
                        .map(|(k, v)| (Value::String(k.clone()), v))
                        .collect(),
                    Value::Null => Vec::new(),
                    other => {
                        return Err(fail(
                            action,
                            format!("can't range over {}", json_kind(other)),
                        ));
                    }
                };
                spend(budget, entries.len() as u64, action)?;
                if entries.is_empty() {
                    exec(otherwise, root, dot, vars, out, budget)?;
                    continue;
                }
                for (key, item) in entries {
                    spend(budget, 1, action)?;
                    if out.len() > MAX_OUTPUT {
                        return Err(fail(
                            action,
                            format!("the template renders more than {} MiB", MAX_OUTPUT >> 20),
                        ));
                    }
                    let declared =
                        usize::from(key_var.is_some()) + usize::from(value_var.is_some());
                    if let Some(k) = key_var {
                        vars.push((k.clone(), key));
                    }
                    if let Some(v) = value_var {
                        vars.push((v.clone(), item.clone()));
                    }
                    let result = exec(body, root, item, vars, out, budget);
                    vars.truncate(vars.len() - declared);
                    result?;
                }
            }
        }
    }
    Ok(())
}

/// Takes `count` of a rendering's range steps from `budget`, or fails at `action`.
fn spend(budget: &mut u64, count: u64, action: &Action) -> Result<(), RenderError> {
    *budget = budget.checked_sub(count).ok_or_else(|| {
        fail(
            action,
            format!("the template takes more than {MAX_STEPS} range steps to render (is a range nested in itself?)"),
        )
    })?;
    Ok(())
}

fn fail(action: &Action, message: String) -> RenderError {
    (action.line, format!("`{}`: {message}", action.text))
}

fn eval<'a>(
    expr: &Expr,
    root: &'a Value,
    dot: &'a Value,
    vars: &'a [(String, Value)],
) -> Result<std::borrow::Cow<'a, Value>, String> {
    use std::borrow::Cow;
    match expr {
        Expr::Str(s) => Ok(Cow::Owned(Value::String(s.clone()))),
        Expr::Int(n) => Ok(Cow::Owned(Value::from(*n))),
        Expr::Path { base, path } => {
            let (start, at_root) = match base {
                Base::Dot => (dot, std::ptr::eq(dot, root)),
                Base::Root => (root, true),
                Base::Var(name) => {
                    let value = vars
                        .iter()
                        .rev()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v)
                        .ok_or_else(|| format!("undefined variable `${name}`"))?;
                    (value, false)
                }
            };
            let mut current = start;
            for (depth, key) in path.iter().enumerate() {
                current = match current {
                    Value::Object(map) => map
                        .get(key)
                        .ok_or_else(|| missing_key(at_root, &path[..depth], key))?,
                    other => {
                        return Err(format!("can't read `{key}` from {}", json_kind(other)));
                    }
                };
            }
            Ok(Cow::Borrowed(current))
        }
        Expr::Index { target, keys } => {
            let target = eval(target, root, dot, vars)?;
            let mut current: Cow<'a, Value> = target;
            for key in keys {
                let key = eval(key, root, dot, vars)?;
                current = match (current, key.as_ref()) {
                    (Cow::Borrowed(Value::Object(map)), Value::String(k)) => {
                        Cow::Borrowed(map.get(k).unwrap_or(&Value::Null))
                    }
                    (Cow::Owned(Value::Object(mut map)), Value::String(k)) => {
                        Cow::Owned(map.remove(k).unwrap_or(Value::Null))
                    }
                    (Cow::Borrowed(Value::Array(items)), Value::Number(n)) => {
                        let item = n
                            .as_u64()
                            .and_then(|i| usize::try_from(i).ok())
                            .and_then(|i| items.get(i))
                            .ok_or_else(|| {
                                format!("index {n} out of range for a list of {}", items.len())
                            })?;
                        Cow::Borrowed(item)
                    }
                    (Cow::Owned(Value::Array(mut items)), Value::Number(n)) => {
                        let len = items.len();
                        let i = n
                            .as_u64()
                            .and_then(|i| usize::try_from(i).ok())
                            .filter(|i| *i < len)
                            .ok_or_else(|| format!("index {n} out of range for a list of {len}"))?;
                        Cow::Owned(items.swap_remove(i))
                    }
                    (current, key) => {
                        return Err(format!(
                            "can't index {} with {}",
                            json_kind(&current),
                            json_kind(key)
                        ));
                    }
                };
            }
            Ok(current)
        }
    }
}

fn missing_key(at_root: bool, parents: &[String], key: &str) -> String {
    match (at_root, parents) {
        (true, []) => format!(
            "no value for `{key}`: it is not in the group's metadata or selectors (test optional keys with {{{{if index . \"{key}\"}}}})"
        ),
        (true, [request, query]) if request == "request" && query == "query" => {
            format!("the request has no query parameter `{key}`")
        }
        (_, []) => format!("no value for `{key}`"),
        _ => format!("no value for `{key}` in `.{}`", parents.join(".")),
    }
}

fn print(value: &Value, out: &mut String) -> Result<(), String> {
    match value {
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Null => {
            return Err(
                "the value is null; matchbox would print `<no value>` into the config".into(),
            );
        }
        Value::Array(_) => {
            return Err("the value is a list; print its items with {{range}}".into());
        }
        Value::Object(_) => {
            return Err("the value is an object; print one of its keys".into());
        }
    }
    Ok(())
}

/// Go's truth: false, 0, "", empty lists and maps, and nil are false.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(src: &str) -> Result<Template, TemplateError> {
        Template::parse(
            "t.yaml",
            "ignition/t.yaml",
            TemplateKind::Butane,
            src.to_string(),
        )
    }

    fn render_str(src: &str, vars: &Value) -> Result<String, String> {
        let t = parse(src).map_err(|e| e.to_string())?;
        render(&t, vars).map_err(|e| e.to_string())
    }

    fn ok(src: &str, vars: &Value) -> String {
        render_str(src, vars).unwrap()
    }

    #[test]
    fn fields_print_and_nest() {
        let vars = json!({"mac": "52:54:00:89:d8:10", "n": 3, "f": 1.5, "b": true,
                          "request": {"query": {"foo": "bar"}, "raw_query": "foo=bar"}});
        assert_eq!(
            ok(
                "{{.mac}} {{ .n }} {{.f}} {{.b}} {{.request.query.foo}} {{.request.raw_query}}",
                &vars
            ),
            "52:54:00:89:d8:10 3 1.5 true bar foo=bar"
        );
        assert_eq!(ok("{{$.mac}}", &vars), "52:54:00:89:d8:10");
        assert_eq!(
            ok("no actions, ${shell} {single}", &vars),
            "no actions, ${shell} {single}"
        );
    }

    #[test]
    fn missing_keys_are_errors_naming_the_line() {
        let vars = json!({"request": {"query": {}}});
        let err = render_str("a\nb {{.missing_key}}", &vars).unwrap_err();
        assert_eq!(
            err,
            "ignition/t.yaml:2: `{{.missing_key}}`: no value for `missing_key`: it is not in the group's metadata or selectors (test optional keys with {{if index . \"missing_key\"}})"
        );
        let err = render_str("{{.request.query.foo}}", &vars).unwrap_err();
        assert!(
            err.ends_with("the request has no query parameter `foo`"),
            "{err}"
        );
        let err = render_str("{{if .x}}y{{end}}", &vars).unwrap_err();
        assert!(err.contains("no value for `x`"), "{err}");
    }

    #[test]
    fn if_else_and_go_truth() {
        let t = "{{if .x}}yes{{else}}no{{end}}";
        for (x, want) in [
            (json!(true), "yes"),
            (json!(false), "no"),
            (json!(0), "no"),
            (json!(2), "yes"),
            (json!(""), "no"),
            (json!("s"), "yes"),
            (json!([]), "no"),
            (json!([1]), "yes"),
            (json!({}), "no"),
            (json!(null), "no"),
        ] {
            assert_eq!(ok(t, &json!({ "x": x })), want, "{x}");
        }
        let t = "{{if .a}}A{{else if .b}}B{{else}}C{{end}}";
        assert_eq!(ok(t, &json!({"a": 1, "b": 1})), "A");
        assert_eq!(ok(t, &json!({"a": 0, "b": 1})), "B");
        assert_eq!(ok(t, &json!({"a": 0, "b": 0})), "C");
    }

    #[test]
    fn index_tests_optional_keys_without_error() {
        let t = r#"{{if index . "keys"}}has {{index .keys 1}}{{else}}none{{end}}"#;
        assert_eq!(ok(t, &json!({"keys": ["a", "b"]})), "has b");
        assert_eq!(ok(t, &json!({})), "none");
        assert_eq!(
            ok(r#"{{index .m "k" "j"}}"#, &json!({"m": {"k": {"j": 7}}})),
            "7"
        );
        let err = render_str("{{index .l 5}}", &json!({"l": [1]})).unwrap_err();
        assert!(err.contains("index 5 out of range"), "{err}");
    }

    /// Found by fuzzing (fuzz/regressions/template/range-nested-in-itself): ranges over `$`
    /// nested in each other rendered for ever, k^depth iterations.
    #[test]
    fn a_range_nested_in_itself_stops_with_an_error_instead_of_rendering_for_ever() {
        let vars = json!({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8});
        let source = format!("x\n{}y{}", "{{range $}}".repeat(9), "{{end}}".repeat(9));
        let started = std::time::Instant::now();
        let err = render_str(&source, &vars).unwrap_err();
        assert!(
            err.contains("more than 100000 range steps") && err.contains(":2:"),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn range_binds_dot_and_variables() {
        let vars = json!({"keys": ["ssh-a", "ssh-b"], "m": {"b": 2, "a": 1}, "top": "T"});
        assert_eq!(ok("{{range .keys}}[{{.}}]{{end}}", &vars), "[ssh-a][ssh-b]");
        assert_eq!(
            ok("{{range $e := .keys}}{{$e}}{{$.top}};{{end}}", &vars),
            "ssh-aT;ssh-bT;"
        );
        assert_eq!(
            ok("{{range $i, $e := .keys}}{{$i}}={{$e}} {{end}}", &vars),
            "0=ssh-a 1=ssh-b "
        );
        assert_eq!(
            ok("{{range $k, $v := .m}}{{$k}}{{$v}}{{end}}", &vars),
            "a1b2"
        );
        assert_eq!(
            ok("{{range .none}}x{{else}}empty{{end}}", &json!({"none": []})),
            "empty"
        );
        assert_eq!(ok(r#"{{range index . "absent"}}x{{end}}"#, &vars), "");
    }

    #[test]
    fn trim_markers_and_comments() {
        let vars = json!({"l": ["a", "b"]});
        assert_eq!(
            ok("x\n{{- range .l }}\ninitrd {{.}}\n{{- end}}\nboot", &vars),
            "x\ninitrd a\ninitrd b\nboot"
        );
        assert_eq!(ok("a  {{- /* note */ -}}  b{{/* c */}}", &vars), "ab");
        assert_eq!(ok("{{-3}}", &vars), "-3");
    }

    #[test]
    fn unsupported_syntax_is_refused_at_parse_time_with_the_line() {
        for (src, line, needle) in [
            (
                "a\n{{printf \"%s\" .x}}",
                2,
                "the function `printf` is not supported",
            ),
            ("{{.x | upper}}", 1, "pipelines"),
            (
                "\n\n{{if eq .x \"y\"}}{{end}}",
                3,
                "the function `eq` is not supported",
            ),
            (
                "{{with .x}}{{end}}",
                1,
                "the `with` action is not supported",
            ),
            (
                "{{$x := .y}}",
                1,
                "variables can only be declared in {{range",
            ),
            ("{{(.x)}}", 1, "parentheses"),
            ("{{.x .y}}", 1, "only functions take arguments"),
            ("{{if .x}}", 1, "is never closed"),
            ("{{end}}", 1, "without an {{if}} or {{range}}"),
            ("{{$nope}}", 1, "undefined variable `$nope`"),
            (
                "{{range $e := .l}}{{end}}{{$e}}",
                1,
                "undefined variable `$e`",
            ),
            ("a\nb {{.x", 2, "unclosed action"),
            ("{{.x}}\n{{1.5}}", 2, "only decimal integers"),
        ] {
            let err = parse(src).unwrap_err();
            assert_eq!(err.line, line, "{src}: {err}");
            assert!(err.message.contains(needle), "{src}: {err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("ignition/t.yaml:{line}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn printing_lists_objects_and_null_is_refused() {
        let vars = json!({"l": [1], "o": {}, "n": null});
        assert!(
            render_str("{{.l}}", &vars)
                .unwrap_err()
                .contains("is a list")
        );
        assert!(
            render_str("{{.o}}", &vars)
                .unwrap_err()
                .contains("is an object")
        );
        assert!(
            render_str("{{.n}}", &vars)
                .unwrap_err()
                .contains("<no value>")
        );
    }

    proptest::proptest! {
        /// Whatever the text, parsing and rendering return a value or an error, never a panic.
        #[test]
        fn parsing_and_rendering_never_panic(src in r#"([a-z .$:=,|()"`\\\n{}-]|\{\{|\}\}|if |range |end|else|index |/\*|\*/|é){0,40}"#) {
            if let Ok(t) = parse(&src) {
                let _ = render(&t, &json!({"a": [1, {"b": "c"}], "request": {"query": {}}}));
            }
        }
    }

    #[test]
    fn raw_ignition_is_served_verbatim() {
        let src = r#"{"ignition":{"version":"3.3.0"},"x":"{{.not_a_template}}"}"#;
        let t = Template::parse(
            "a.ign",
            "ignition/a.ign",
            TemplateKind::Ignition,
            src.into(),
        )
        .unwrap();
        assert_eq!(render(&t, &json!({})).unwrap(), src);
        assert_eq!(
            TemplateKind::of_ignition_file("a.ignition"),
            TemplateKind::Ignition
        );
        assert_eq!(
            TemplateKind::of_ignition_file("a.yaml"),
            TemplateKind::Butane
        );
    }
}
