//! Expands the templates of the unrolled matmul kernels
//! (shaders/matmul_direct.wgsl, shaders/matmul_texture.wgsl): WGSL with
//! three additions, each a comment line so the template reads as the kernel
//! it makes.
//!
//! - `//# for x in 0..N` … `//# end` repeats the lines between for x = 0,
//!   1, …, N − 1;
//! - `//# if FLAG` … `//# else` … `//# end` keeps one branch (`!FLAG`
//!   negates);
//! - `{expr}` in a line is replaced by the value of an integer expression
//!   (numbers, variables, `+ - * / %`, parentheses), and `{lane(expr)}` by
//!   the vec4 component `x`, `y`, `z` or `w` of index `expr`.
//!
//! Blocks are unrolled rather than looped because llvmpipe's LLVM keeps an
//! array of accumulators in memory, 3× slower (docs/performance.md).

use std::collections::HashMap;

/// What a template's names stand for: integers and flags.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bindings {
    numbers: HashMap<String, i64>,
    flags: HashMap<String, bool>,
}

impl Bindings {
    /// Adds an integer variable.
    pub(crate) fn number(mut self, name: &str, value: i64) -> Self {
        self.numbers.insert(name.into(), value);
        self
    }

    /// Adds a flag for `//# if`.
    pub(crate) fn flag(mut self, name: &str, value: bool) -> Self {
        self.flags.insert(name.into(), value);
        self
    }
}

/// The template expanded with `bindings`.
///
/// # Panics
/// On a malformed template (an unknown name, an unbalanced block, a bad
/// expression), naming the line: templates are part of the program, and
/// the tests expand every one.
pub(crate) fn expand(template: &str, bindings: &Bindings) -> String {
    let lines: Vec<&str> = template.lines().collect();
    let mut out = String::new();
    let end = expand_block(&lines, 0, &mut bindings.clone(), &mut out, true);
    assert_eq!(
        end,
        lines.len(),
        "line {}: unexpected //# end or //# else",
        end + 1
    );
    out
}

/// Expands lines from `start` until an `//# end` or `//# else` at this level
/// (returned: its index) or the end of the template; writes only when
/// `emit`.
fn expand_block(
    lines: &[&str],
    start: usize,
    vars: &mut Bindings,
    out: &mut String,
    emit: bool,
) -> usize {
    let mut i = start;
    while i < lines.len() {
        let line = lines[i];
        let directive = line.trim_start().strip_prefix("//#").map(str::trim);
        match directive {
            Some("end") | Some("else") => return i,
            Some(d) if d.starts_with("for ") => {
                let (name, bound) = parse_for(d, vars, i);
                let mut body_end = i + 1;
                for value in 0..bound.max(0) {
                    vars.numbers.insert(name.clone(), value);
                    body_end = expand_block(lines, i + 1, vars, out, emit);
                }
                if bound <= 0 {
                    vars.numbers.insert(name.clone(), 0);
                    body_end = expand_block(lines, i + 1, vars, out, false);
                }
                vars.numbers.remove(&name);
                assert!(
                    lines.get(body_end).map(|l| l.trim()) == Some("//# end"),
                    "line {}: //# for without //# end",
                    i + 1
                );
                i = body_end + 1;
            }
            Some(d) if d.starts_with("if ") => {
                let flag = d["if ".len()..].trim();
                let (name, negate) = match flag.strip_prefix('!') {
                    Some(name) => (name, true),
                    None => (flag, false),
                };
                let value = *vars
                    .flags
                    .get(name)
                    .unwrap_or_else(|| panic!("line {}: unknown flag {name}", i + 1))
                    ^ negate;
                let mut at = expand_block(lines, i + 1, vars, out, emit && value);
                if lines.get(at).map(|l| l.trim()) == Some("//# else") {
                    at = expand_block(lines, at + 1, vars, out, emit && !value);
                }
                assert!(
                    lines.get(at).map(|l| l.trim()) == Some("//# end"),
                    "line {}: //# if without //# end",
                    i + 1
                );
                i = at + 1;
            }
            Some(d) => panic!("line {}: unknown directive //# {d}", i + 1),
            None => {
                if emit {
                    out.push_str(&substitute(line, vars, i));
                    out.push('\n');
                }
                i += 1;
            }
        }
    }
    i
}

/// `for x in 0..EXPR`: the variable and the bound.
fn parse_for(directive: &str, vars: &Bindings, line: usize) -> (String, i64) {
    let rest = &directive["for ".len()..];
    let (name, range) = rest
        .split_once(" in ")
        .unwrap_or_else(|| panic!("line {}: expected `for x in 0..N`", line + 1));
    let bound = range
        .trim()
        .strip_prefix("0..")
        .unwrap_or_else(|| panic!("line {}: a range starts at 0..", line + 1));
    (name.trim().to_string(), evaluate(bound, vars, line))
}

/// The line with every `{expr}` replaced.
fn substitute(line: &str, vars: &Bindings, at: usize) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find('{') {
        // WGSL's own braces stand alone or end a line; a placeholder holds
        // a name or number right after `{`.
        let next = rest[open + 1..].chars().next();
        if !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '(') {
            out.push_str(&rest[..=open]);
            rest = &rest[open + 1..];
            continue;
        }
        let close = rest[open..]
            .find('}')
            .unwrap_or_else(|| panic!("line {}: unclosed {{", at + 1))
            + open;
        out.push_str(&rest[..open]);
        let expr = &rest[open + 1..close];
        match expr.strip_prefix("lane(").and_then(|e| e.strip_suffix(')')) {
            Some(inner) => {
                let index = evaluate(inner, vars, at);
                out.push(['x', 'y', 'z', 'w'][index.rem_euclid(4) as usize]);
            }
            None => out.push_str(&evaluate(expr, vars, at).to_string()),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The value of an integer expression over `vars`.
fn evaluate(expr: &str, vars: &Bindings, line: usize) -> i64 {
    let tokens = tokenize(expr, line);
    let mut parser = Parser {
        tokens: &tokens,
        at: 0,
        vars,
        line,
    };
    let value = parser.sum();
    assert_eq!(
        parser.at,
        tokens.len(),
        "line {}: cannot read `{expr}`",
        line + 1
    );
    value
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(i64),
    Name(String),
    Op(char),
}

fn tokenize(expr: &str, line: usize) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_digit() {
            let mut n = 0i64;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = n * 10 + d as i64;
                chars.next();
            }
            tokens.push(Token::Number(n));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut name = String::new();
            while let Some(&c) = chars
                .peek()
                .filter(|c| c.is_ascii_alphanumeric() || **c == '_')
            {
                name.push(c);
                chars.next();
            }
            tokens.push(Token::Name(name));
        } else if "+-*/%()".contains(c) {
            tokens.push(Token::Op(c));
            chars.next();
        } else {
            panic!("line {}: unexpected `{c}` in `{expr}`", line + 1);
        }
    }
    tokens
}

/// A recursive-descent reader of `sum := product (('+'|'-') product)*`,
/// `product := atom (('*'|'/'|'%') atom)*`, `atom := number | name | (sum)`.
struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    vars: &'a Bindings,
    line: usize,
}

impl Parser<'_> {
    fn sum(&mut self) -> i64 {
        let mut value = self.product();
        while let Some(Token::Op(op @ ('+' | '-'))) = self.tokens.get(self.at).cloned() {
            self.at += 1;
            let rhs = self.product();
            value = if op == '+' { value + rhs } else { value - rhs };
        }
        value
    }

    fn product(&mut self) -> i64 {
        let mut value = self.atom();
        while let Some(Token::Op(op @ ('*' | '/' | '%'))) = self.tokens.get(self.at).cloned() {
            self.at += 1;
            let rhs = self.atom();
            value = match op {
                '*' => value * rhs,
                '/' => value / rhs,
                _ => value % rhs,
            };
        }
        value
    }

    fn atom(&mut self) -> i64 {
        let line = self.line + 1;
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        match token {
            Some(Token::Number(n)) => n,
            Some(Token::Name(name)) => *self
                .vars
                .numbers
                .get(&name)
                .unwrap_or_else(|| panic!("line {line}: unknown name {name}")),
            Some(Token::Op('(')) => {
                let value = self.sum();
                assert_eq!(
                    self.tokens.get(self.at),
                    Some(&Token::Op(')')),
                    "line {line}: missing )"
                );
                self.at += 1;
                value
            }
            other => panic!("line {line}: unexpected {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_repeat_their_lines_with_the_variable_substituted() {
        let template = "a\n//# for r in 0..N\n  x{r} = {r * 2 + 1};\n//# end\nb";
        let out = expand(template, &Bindings::default().number("N", 3));
        assert_eq!(out, "a\n  x0 = 1;\n  x1 = 3;\n  x2 = 5;\nb\n");
    }

    #[test]
    fn nested_loops_and_lanes() {
        let template =
            "//# for r in 0..2\n//# for j in 0..N/2\nv{r}_{j}.{lane(r * 2 + j)}\n//# end\n//# end";
        let out = expand(template, &Bindings::default().number("N", 4));
        assert_eq!(out, "v0_0.x\nv0_1.y\nv1_0.z\nv1_1.w\n");
    }

    #[test]
    fn conditions_keep_one_branch_and_wgsl_braces_stay() {
        let template =
            "fn f() {\n//# if T\n  t{1 + 1}\n//# else\n  e\n//# end\n//# if !T\n  not\n//# end\n}";
        let on = expand(template, &Bindings::default().flag("T", true));
        assert_eq!(on, "fn f() {\n  t2\n}\n");
        let off = expand(template, &Bindings::default().flag("T", false));
        assert_eq!(off, "fn f() {\n  e\n  not\n}\n");
    }

    #[test]
    fn precedence_and_parentheses() {
        let b = Bindings::default().number("RM", 8).number("RN", 4);
        assert_eq!(evaluate("RM * RN + 1", &b, 0), 33);
        assert_eq!(evaluate("(RM + RN) / 4 % 2", &b, 0), 1);
        assert_eq!(evaluate("RM - RN - 1", &b, 0), 3);
    }

    #[test]
    #[should_panic(expected = "unknown name Q")]
    fn an_unknown_name_is_refused() {
        expand("{Q}", &Bindings::default());
    }

    #[test]
    #[should_panic(expected = "without //# end")]
    fn an_unclosed_block_is_refused() {
        expand("//# for r in 0..2\nx", &Bindings::default());
    }
}
