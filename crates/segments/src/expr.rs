//! Druid's native expression language, the subset ingestion transforms and expression filters
//! use (documented in docs/druid-api-compatibility.md):
//!
//! - literals: `123`, `1.5`, `'text'` (with `\'` escapes), `null`;
//! - columns: `name` or `"quoted name"`, including `__time`;
//! - operators, loosest first: `||`, `&&`, `==` `!=` `<` `<=` `>` `>=`, `+` `-`, `*` `/` `%`,
//!   `^`, unary `-` and `!`; `+` joins strings; comparisons and logic give 1 or 0;
//! - functions: see [`call`].
//!
//! Nulls propagate through arithmetic as in Druid's SQL-compatible mode.

use crate::spec::Period;
use crate::time::{format_iso, parse_iso};

/// A value of an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprValue {
    Null,
    Long(i64),
    Double(f64),
    String(String),
}

impl ExprValue {
    fn as_f64(&self) -> Option<f64> {
        match self {
            ExprValue::Long(v) => Some(*v as f64),
            ExprValue::Double(v) => Some(*v),
            ExprValue::String(s) => s.trim().parse().ok(),
            ExprValue::Null => None,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            ExprValue::Long(v) => Some(*v),
            ExprValue::Double(v) => Some(*v as i64),
            ExprValue::String(s) => s
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| s.trim().parse::<f64>().ok().map(|f| f as i64)),
            ExprValue::Null => None,
        }
    }

    /// Druid's truthiness: non-zero numbers, and the string "true".
    pub fn is_true(&self) -> bool {
        match self {
            ExprValue::Long(v) => *v != 0,
            ExprValue::Double(v) => *v != 0.0,
            ExprValue::String(s) => s.eq_ignore_ascii_case("true"),
            ExprValue::Null => false,
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            ExprValue::Null => None,
            ExprValue::String(s) => Some(s.clone()),
            ExprValue::Long(v) => Some(v.to_string()),
            ExprValue::Double(v) => Some(v.to_string()),
        }
    }

    fn boolean(b: bool) -> ExprValue {
        ExprValue::Long(i64::from(b))
    }
}

/// Column values an expression reads.
pub trait Columns {
    fn column(&self, name: &str) -> ExprValue;
}

/// Why an expression could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at character {position} of '{text}'")]
pub struct ExprError {
    pub text: String,
    pub position: usize,
    pub message: String,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(ExprValue),
    Column(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call(Function, Vec<Expr>),
}

/// The functions of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Concat,
    Substring,
    Strlen,
    Lower,
    Upper,
    Trim,
    Replace,
    Strpos,
    If,
    Nvl,
    CaseSearched,
    CaseSimple,
    Abs,
    Floor,
    Ceil,
    Round,
    Greatest,
    Least,
    CastLong,
    CastDouble,
    CastString,
    Cast,
    TimestampFloor,
    TimestampCeil,
    TimestampParse,
    TimestampFormat,
    Like,
    IsNull,
    NotNull,
}

impl Function {
    fn by_name(name: &str) -> Option<(Function, usize, Option<usize>)> {
        use Function::*;
        // (function, fewest arguments, most arguments)
        Some(match name.to_ascii_lowercase().as_str() {
            "concat" => (Concat, 1, None),
            "substring" => (Substring, 3, Some(3)),
            "strlen" => (Strlen, 1, Some(1)),
            "lower" => (Lower, 1, Some(1)),
            "upper" => (Upper, 1, Some(1)),
            "trim" => (Trim, 1, Some(1)),
            "replace" => (Replace, 3, Some(3)),
            "strpos" => (Strpos, 2, Some(3)),
            "if" => (If, 3, Some(3)),
            "nvl" => (Nvl, 2, Some(2)),
            "case_searched" => (CaseSearched, 2, None),
            "case_simple" => (CaseSimple, 3, None),
            "abs" => (Abs, 1, Some(1)),
            "floor" => (Floor, 1, Some(1)),
            "ceil" => (Ceil, 1, Some(1)),
            "round" => (Round, 1, Some(2)),
            "greatest" => (Greatest, 1, None),
            "least" => (Least, 1, None),
            "cast" => (Cast, 2, Some(2)),
            "timestamp_floor" => (TimestampFloor, 2, Some(2)),
            "timestamp_ceil" => (TimestampCeil, 2, Some(2)),
            "timestamp_parse" | "timestamp" => (TimestampParse, 1, Some(1)),
            "timestamp_format" => (TimestampFormat, 1, Some(1)),
            "like" => (Like, 2, Some(2)),
            "isnull" => (IsNull, 1, Some(1)),
            "notnull" => (NotNull, 1, Some(1)),
            _ => return None,
        })
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Expr {
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let mut p = Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        };
        let expr = p.binary(0)?;
        p.skip_spaces();
        if p.pos != p.bytes.len() {
            return Err(p.error("unexpected text"));
        }
        Ok(expr)
    }

    /// Evaluates the expression over a row.
    pub fn eval(&self, row: &dyn Columns) -> ExprValue {
        match self {
            Expr::Literal(v) => v.clone(),
            Expr::Column(name) => row.column(name),
            Expr::Neg(inner) => match inner.eval(row) {
                ExprValue::Long(v) => ExprValue::Long(v.wrapping_neg()),
                other => other
                    .as_f64()
                    .map_or(ExprValue::Null, |v| ExprValue::Double(-v)),
            },
            Expr::Not(inner) => ExprValue::boolean(!inner.eval(row).is_true()),
            Expr::Binary(op, a, b) => binary(*op, a, b, row),
            Expr::Call(f, args) => call(*f, args, row),
        }
    }
}

const LEVELS: &[&[(&str, BinOp)]] = &[
    &[("||", BinOp::Or)],
    &[("&&", BinOp::And)],
    &[
        ("==", BinOp::Eq),
        ("!=", BinOp::Ne),
        ("<=", BinOp::Le),
        (">=", BinOp::Ge),
        ("<", BinOp::Lt),
        (">", BinOp::Gt),
    ],
    &[("+", BinOp::Add), ("-", BinOp::Sub)],
    &[("*", BinOp::Mul), ("/", BinOp::Div), ("%", BinOp::Rem)],
    &[("^", BinOp::Pow)],
];

impl Parser<'_> {
    fn error(&self, message: &str) -> ExprError {
        ExprError {
            text: self.text.to_string(),
            position: self.pos + 1,
            message: message.to_string(),
        }
    }

    fn skip_spaces(&mut self) {
        while self
            .bytes
            .get(self.pos)
            .is_some_and(u8::is_ascii_whitespace)
        {
            self.pos += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_spaces();
        if self.text[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn binary(&mut self, level: usize) -> Result<Expr, ExprError> {
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        'next: loop {
            for (token, op) in LEVELS[level] {
                if self.eat(token) {
                    // `^` groups to the right, the others to the left.
                    let right = if *op == BinOp::Pow {
                        self.binary(level)?
                    } else {
                        self.binary(level + 1)?
                    };
                    left = Expr::Binary(*op, Box::new(left), Box::new(right));
                    continue 'next;
                }
            }
            return Ok(left);
        }
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.eat("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        self.skip_spaces();
        let Some(&c) = self.bytes.get(self.pos) else {
            return Err(self.error("expected a value"));
        };
        if c == b'(' {
            self.pos += 1;
            let inner = self.binary(0)?;
            if !self.eat(")") {
                return Err(self.error("expected ')'"));
            }
            return Ok(inner);
        }
        if c == b'\'' || c == b'"' {
            let text = self.quoted(c)?;
            return Ok(if c == b'\'' {
                Expr::Literal(ExprValue::String(text))
            } else {
                Expr::Column(text)
            });
        }
        if c.is_ascii_digit() || c == b'.' {
            let start = self.pos;
            while self
                .bytes
                .get(self.pos)
                .is_some_and(|b| b.is_ascii_digit() || *b == b'.' || *b == b'e' || *b == b'E')
            {
                self.pos += 1;
            }
            let number = &self.text[start..self.pos];
            return number
                .parse::<i64>()
                .map(|v| Expr::Literal(ExprValue::Long(v)))
                .or_else(|_| {
                    number
                        .parse::<f64>()
                        .map(|v| Expr::Literal(ExprValue::Double(v)))
                })
                .map_err(|_| self.error("invalid number"));
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = self.pos;
            while self
                .bytes
                .get(self.pos)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
            {
                self.pos += 1;
            }
            let name = &self.text[start..self.pos];
            if name.eq_ignore_ascii_case("null") {
                return Ok(Expr::Literal(ExprValue::Null));
            }
            if !self.eat("(") {
                return Ok(Expr::Column(name.to_string()));
            }
            let Some((function, fewest, most)) = Function::by_name(name) else {
                self.pos = start;
                return Err(self.error(&format!("unknown function '{name}'")));
            };
            let mut args = Vec::new();
            if !self.eat(")") {
                loop {
                    args.push(self.binary(0)?);
                    if self.eat(")") {
                        break;
                    }
                    if !self.eat(",") {
                        return Err(self.error("expected ',' or ')'"));
                    }
                }
            }
            if args.len() < fewest || most.is_some_and(|m| args.len() > m) {
                self.pos = start;
                return Err(self.error(&format!("wrong number of arguments for {name}")));
            }
            return Ok(Expr::Call(function, args));
        }
        Err(self.error("expected a value"))
    }

    fn quoted(&mut self, quote: u8) -> Result<String, ExprError> {
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.text[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, escaped)) => out.push(escaped),
                    None => break,
                },
                c if c as u32 == u32::from(quote) => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        Err(self.error("unterminated quote"))
    }
}

fn binary(op: BinOp, a: &Expr, b: &Expr, row: &dyn Columns) -> ExprValue {
    match op {
        BinOp::Or => return ExprValue::boolean(a.eval(row).is_true() || b.eval(row).is_true()),
        BinOp::And => return ExprValue::boolean(a.eval(row).is_true() && b.eval(row).is_true()),
        _ => {}
    }
    let (x, y) = (a.eval(row), b.eval(row));
    if matches!(x, ExprValue::Null) || matches!(y, ExprValue::Null) {
        return ExprValue::Null;
    }
    let strings = matches!(x, ExprValue::String(_)) && matches!(y, ExprValue::String(_));
    if let (BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge, true) =
        (op, strings)
    {
        let ordering = x.text().cmp(&y.text());
        return ExprValue::boolean(compare(op, ordering));
    }
    if op == BinOp::Add && (matches!(x, ExprValue::String(_)) || matches!(y, ExprValue::String(_)))
    {
        return ExprValue::String(format!(
            "{}{}",
            x.text().unwrap_or_default(),
            y.text().unwrap_or_default()
        ));
    }
    if let (ExprValue::Long(l), ExprValue::Long(r)) = (&x, &y) {
        let (l, r) = (*l, *r);
        return match op {
            BinOp::Add => ExprValue::Long(l.wrapping_add(r)),
            BinOp::Sub => ExprValue::Long(l.wrapping_sub(r)),
            BinOp::Mul => ExprValue::Long(l.wrapping_mul(r)),
            BinOp::Div if r == 0 => ExprValue::Null,
            BinOp::Div => ExprValue::Long(l.wrapping_div(r)),
            BinOp::Rem if r == 0 => ExprValue::Null,
            BinOp::Rem => ExprValue::Long(l.wrapping_rem(r)),
            BinOp::Pow => ExprValue::Long((l as f64).powf(r as f64) as i64),
            _ => ExprValue::boolean(compare(op, l.cmp(&r))),
        };
    }
    let (Some(l), Some(r)) = (x.as_f64(), y.as_f64()) else {
        return ExprValue::Null;
    };
    match op {
        BinOp::Add => ExprValue::Double(l + r),
        BinOp::Sub => ExprValue::Double(l - r),
        BinOp::Mul => ExprValue::Double(l * r),
        BinOp::Div => ExprValue::Double(l / r),
        BinOp::Rem => ExprValue::Double(l % r),
        BinOp::Pow => ExprValue::Double(l.powf(r)),
        _ => ExprValue::boolean(l.partial_cmp(&r).is_some_and(|o| compare(op, o))),
    }
}

fn compare(op: BinOp, ordering: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        BinOp::Eq => ordering == Equal,
        BinOp::Ne => ordering != Equal,
        BinOp::Lt => ordering == Less,
        BinOp::Le => ordering != Greater,
        BinOp::Gt => ordering == Greater,
        BinOp::Ge => ordering != Less,
        _ => false,
    }
}

/// Evaluates a function call. Functions: concat, substring(s, index, length) (0-based),
/// strlen, lower, upper, trim, replace(s, from, to), strpos(s, needle[, from]), if(c, a, b),
/// nvl(a, b), case_searched(c1, v1, ..., else), case_simple(x, v1, r1, ..., else), abs,
/// floor, ceil, round(x[, scale]), greatest, least, cast(x, 'LONG'|'DOUBLE'|'STRING'),
/// timestamp_floor(t, 'PT1H'), timestamp_ceil(t, period), timestamp_parse(s) (ISO),
/// timestamp_format(t) (ISO), like(s, pattern), isnull(x), notnull(x).
fn call(function: Function, args: &[Expr], row: &dyn Columns) -> ExprValue {
    use Function::*;
    let arg = |i: usize| args.get(i).map_or(ExprValue::Null, |a| a.eval(row));
    let text = |i: usize| arg(i).text();
    let number = |v: ExprValue, f: &dyn Fn(f64) -> f64| match v {
        ExprValue::Long(l) => ExprValue::Long(f(l as f64) as i64),
        other => other
            .as_f64()
            .map_or(ExprValue::Null, |d| ExprValue::Double(f(d))),
    };
    let string = |s: Option<String>| s.map_or(ExprValue::Null, ExprValue::String);
    match function {
        Concat => {
            let mut out = String::new();
            for i in 0..args.len() {
                match text(i) {
                    Some(t) => out.push_str(&t),
                    None => return ExprValue::Null,
                }
            }
            ExprValue::String(out)
        }
        Substring => {
            let (Some(s), Some(start), Some(len)) = (text(0), arg(1).as_i64(), arg(2).as_i64())
            else {
                return ExprValue::Null;
            };
            let chars = s.chars().skip(start.max(0) as usize);
            ExprValue::String(if len < 0 {
                chars.collect()
            } else {
                chars.take(len as usize).collect()
            })
        }
        Strlen => text(0).map_or(ExprValue::Null, |s| {
            ExprValue::Long(s.chars().count() as i64)
        }),
        Lower => string(text(0).map(|s| s.to_lowercase())),
        Upper => string(text(0).map(|s| s.to_uppercase())),
        Trim => string(text(0).map(|s| s.trim().to_string())),
        Replace => match (text(0), text(1), text(2)) {
            (Some(s), Some(from), Some(to)) => ExprValue::String(s.replace(&from, &to)),
            _ => ExprValue::Null,
        },
        Strpos => match (text(0), text(1)) {
            (Some(s), Some(needle)) => {
                let from = arg(2).as_i64().unwrap_or(0).max(0) as usize;
                let hay: String = s.chars().skip(from).collect();
                ExprValue::Long(
                    hay.find(&needle)
                        .map_or(-1, |b| (from + hay[..b].chars().count()) as i64),
                )
            }
            _ => ExprValue::Null,
        },
        If => {
            if arg(0).is_true() {
                arg(1)
            } else {
                arg(2)
            }
        }
        Nvl => match arg(0) {
            ExprValue::Null => arg(1),
            v => v,
        },
        CaseSearched => {
            let mut i = 0;
            while i + 1 < args.len() {
                if arg(i).is_true() {
                    return arg(i + 1);
                }
                i += 2;
            }
            if i < args.len() {
                arg(i)
            } else {
                ExprValue::Null
            }
        }
        CaseSimple => {
            let subject = arg(0);
            let mut i = 1;
            while i + 1 < args.len() {
                if arg(i) == subject {
                    return arg(i + 1);
                }
                i += 2;
            }
            if i < args.len() {
                arg(i)
            } else {
                ExprValue::Null
            }
        }
        Abs => number(arg(0), &f64::abs),
        Floor => number(arg(0), &f64::floor),
        Ceil => number(arg(0), &f64::ceil),
        Round => {
            let scale = arg(1).as_i64().unwrap_or(0);
            match arg(0) {
                ExprValue::Long(v) if scale >= 0 => ExprValue::Long(v),
                v => v.as_f64().map_or(ExprValue::Null, |d| {
                    let factor = 10f64.powi(scale as i32);
                    ExprValue::Double((d * factor).round() / factor)
                }),
            }
        }
        Greatest | Least => {
            let values: Vec<ExprValue> = (0..args.len())
                .map(arg)
                .filter(|v| *v != ExprValue::Null)
                .collect();
            let pick = |a: &ExprValue, b: &ExprValue| {
                let ordering = match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                    _ => a.text().cmp(&b.text()),
                };
                if function == Greatest {
                    ordering.is_ge()
                } else {
                    ordering.is_le()
                }
            };
            values
                .iter()
                .fold(None::<&ExprValue>, |best, v| match best {
                    Some(b) if pick(b, v) => Some(b),
                    _ => Some(v),
                })
                .cloned()
                .unwrap_or(ExprValue::Null)
        }
        Cast => match text(1).map(|t| t.to_ascii_uppercase()).as_deref() {
            Some("LONG") | Some("BIGINT") => call(CastLong, &args[..1], row),
            Some("DOUBLE") | Some("FLOAT") => call(CastDouble, &args[..1], row),
            Some("STRING") | Some("VARCHAR") => call(CastString, &args[..1], row),
            _ => ExprValue::Null,
        },
        CastLong => arg(0).as_i64().map_or(ExprValue::Null, ExprValue::Long),
        CastDouble => arg(0).as_f64().map_or(ExprValue::Null, ExprValue::Double),
        CastString => string(text(0)),
        TimestampFloor | TimestampCeil => {
            let (Some(t), Some(period)) = (
                arg(0).as_i64(),
                text(1).and_then(|p| Period::parse(&p).ok()),
            ) else {
                return ExprValue::Null;
            };
            let granularity = crate::spec::Granularity::Period {
                period,
                origin_millis: 0,
            };
            let (start, end) = crate::time::bucket(t, &granularity);
            ExprValue::Long(if function == TimestampFloor || start == t {
                start
            } else {
                end
            })
        }
        TimestampParse => text(0)
            .and_then(|s| parse_iso(&s))
            .map_or(ExprValue::Null, ExprValue::Long),
        TimestampFormat => arg(0)
            .as_i64()
            .map_or(ExprValue::Null, |t| ExprValue::String(format_iso(t))),
        Like => match (text(0), text(1)) {
            (Some(s), Some(pattern)) => ExprValue::boolean(like(&s, &pattern)),
            _ => ExprValue::Null,
        },
        IsNull => ExprValue::boolean(arg(0) == ExprValue::Null),
        NotNull => ExprValue::boolean(arg(0) != ExprValue::Null),
    }
}

/// SQL LIKE: `%` any run, `_` one character, `\` escapes.
pub fn like(text: &str, pattern: &str) -> bool {
    fn matches(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| matches(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && matches(&t[1..], rest),
            Some(('\\', rest)) if !rest.is_empty() => {
                t.first() == Some(&rest[0]) && matches(&t[1..], &rest[1..])
            }
            Some((c, rest)) => t.first() == Some(c) && matches(&t[1..], rest),
        }
    }
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    matches(&t, &p)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Row(HashMap<&'static str, ExprValue>);

    impl Columns for Row {
        fn column(&self, name: &str) -> ExprValue {
            self.0.get(name).cloned().unwrap_or(ExprValue::Null)
        }
    }

    fn row() -> Row {
        Row(HashMap::from([
            ("views", ExprValue::Long(120)),
            ("ratio", ExprValue::Double(0.25)),
            ("user", ExprValue::String("Willow".into())),
            (
                "__time",
                ExprValue::Long(parse_iso("2024-05-01T10:42:00Z").unwrap()),
            ),
            ("odd name", ExprValue::Long(7)),
        ]))
    }

    fn eval(text: &str) -> ExprValue {
        Expr::parse(text)
            .unwrap_or_else(|e| panic!("{e}"))
            .eval(&row())
    }

    #[test]
    fn arithmetic_comparison_and_logic() {
        assert_eq!(eval("views * 2 + 1"), ExprValue::Long(241));
        assert_eq!(eval("views / 7"), ExprValue::Long(17));
        assert_eq!(eval("views / 0"), ExprValue::Null);
        assert_eq!(eval("ratio * 4"), ExprValue::Double(1.0));
        assert_eq!(eval("2 ^ 3 ^ 2"), ExprValue::Long(512));
        assert_eq!(eval("-views + \"odd name\""), ExprValue::Long(-113));
        assert_eq!(eval("views > 100 && user == 'Willow'"), ExprValue::Long(1));
        assert_eq!(eval("!(views > 100) || missing > 1"), ExprValue::Long(0));
        assert_eq!(eval("missing + 1"), ExprValue::Null);
        assert_eq!(eval("user + '!'"), ExprValue::String("Willow!".into()));
        assert_eq!(eval("'a' < 'b'"), ExprValue::Long(1));
    }

    #[test]
    fn functions() {
        assert_eq!(
            eval("concat(lower(user), '-', views)"),
            ExprValue::String("willow-120".into())
        );
        assert_eq!(
            eval("substring(user, 1, 3)"),
            ExprValue::String("ill".into())
        );
        assert_eq!(eval("strlen(user)"), ExprValue::Long(6));
        assert_eq!(
            eval("if(views > 200, 'big', 'small')"),
            ExprValue::String("small".into())
        );
        assert_eq!(eval("nvl(missing, 5)"), ExprValue::Long(5));
        assert_eq!(
            eval("case_searched(views < 10, 'few', views < 1000, 'some', 'many')"),
            ExprValue::String("some".into())
        );
        assert_eq!(
            eval("case_simple(user, 'Mia', 1, 'Willow', 2, 0)"),
            ExprValue::Long(2)
        );
        assert_eq!(eval("round(ratio * 3.14159, 2)"), ExprValue::Double(0.79));
        assert_eq!(eval("greatest(3, views, 7)"), ExprValue::Long(120));
        assert_eq!(eval("cast('42', 'LONG') + 1"), ExprValue::Long(43));
        assert_eq!(
            eval("timestamp_format(timestamp_floor(__time, 'PT1H'))"),
            ExprValue::String("2024-05-01T10:00:00.000Z".into())
        );
        assert_eq!(
            eval("timestamp_ceil(__time, 'PT1H') - timestamp_floor(__time, 'PT1H')"),
            ExprValue::Long(3_600_000)
        );
        assert_eq!(
            eval("timestamp_parse('2024-05-01T00:00:00Z')"),
            ExprValue::Long(parse_iso("2024-05-01").unwrap())
        );
        assert_eq!(eval("like(user, 'W%w')"), ExprValue::Long(1));
        assert_eq!(eval("isnull(missing) && notnull(user)"), ExprValue::Long(1));
        assert_eq!(
            eval("replace(user, 'ow', 'ed')"),
            ExprValue::String("Willed".into())
        );
        assert_eq!(eval("strpos(user, 'l')"), ExprValue::Long(2));
    }

    #[test]
    fn errors_say_where() {
        let err = Expr::parse("views +").unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected a value at character 8 of 'views +'"
        );
        let err = Expr::parse("nope(1)").unwrap_err();
        assert_eq!(err.message, "unknown function 'nope'");
        assert_eq!(err.position, 1);
        assert!(
            Expr::parse("concat()")
                .unwrap_err()
                .message
                .contains("wrong number of arguments")
        );
        assert!(
            Expr::parse("'open")
                .unwrap_err()
                .message
                .contains("unterminated")
        );
        assert!(Expr::parse("(1 + 2").unwrap_err().message.contains("')'"));
    }

    #[test]
    fn like_patterns() {
        assert!(like("hello", "h%o"));
        assert!(like("hello", "h_llo"));
        assert!(!like("hello", "h_lo"));
        assert!(like("50%", "50\\%"));
        assert!(like("", "%"));
    }
}
