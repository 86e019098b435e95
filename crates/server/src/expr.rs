//! Expressions of computed channels as text (issue 18): [`compile`] turns infix text into an
//! expression program (PROTOCOL.md 17.3) and [`decompile`] turns a program back into canonical
//! text that compiles to the same bytes.
//!
//! The grammar, loosest binding first (binary operators are left-associative):
//!
//! ```text
//! expr    = and ("or" and)*
//! and     = not ("and" not)*
//! not     = "not" not | cmp
//! cmp     = sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum)*
//! sum     = product (("+" | "-") product)*
//! product = unary (("*" | "/") unary)*
//! unary   = "-" integer | "-" unary | primary
//! primary = integer | channel | "none" | "(" expr ")"
//!         | ("min" | "max" | "default") "(" expr "," expr ")" | "abs" "(" expr ")"
//!         | "if" "(" expr "," expr "," expr ")"
//!         | ("delta" | "rate" | "mean" | "min_of" | "max_of") "(" channel ")"
//! channel = "#" digits | "ch" digits | '"' channel name '"'
//! ```
//!
//! `-` directly before an integer is part of the constant (`-5` is the constant -5, `-(5)` the
//! negation of 5), so every constant of `i32` can be written and every program the compiler
//! emits decompiles to text that emits it again. Constants take `const8` when they fit.
//!
//! Errors carry the byte offset in the text ("expected ')' at 14"). The compiled program then
//! goes through the protocol's own verifier ([`tek_proto::channel::expr::verify`]) with the
//! channel's place in its map; its errors are given at the text position of the instruction at
//! fault and name the reference as written.
//!
//! Compiling any string never panics: the text is bounded ([`MAX_TEXT`]) and so is the nesting
//! of the recursive-descent parser ([`MAX_NESTING`]).

use std::fmt::Write as _;
use tek_proto::channel::expr::{self, op, ExprErrorKind, Func, Op, Scope, MAX_PROGRAM, MAX_STACK};

/// Longest expression text, bytes.
pub const MAX_TEXT: usize = 2000;
/// Deepest nesting of parentheses, functions and prefix operators the parser follows.
pub const MAX_NESTING: usize = 64;

/// Why a text does not compile, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// Byte offset in the text.
    pub at: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.message, self.at)
    }
}

impl std::error::Error for CompileError {}

fn fail<T>(at: usize, message: impl Into<String>) -> Result<T, CompileError> {
    Err(CompileError {
        at,
        message: message.into(),
    })
}

/// An expression tree; `at` is where the node starts in the text (or the program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The expression.
    pub expr: Expr,
    /// Offset in the text it came from.
    pub at: usize,
    /// Length of its token in the text (for a channel reference: the reference as written).
    pub len: usize,
}

/// The kinds of [`Node`]; operators carry their opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A constant.
    Const(i32),
    /// A channel's value.
    Chan(u8),
    /// No value.
    NoValue,
    /// `abs`, `neg` or `not`.
    Unary(u8, Box<Node>),
    /// An arithmetic, comparison, `min`/`max` or logic operator.
    Binary(u8, Box<Node>, Box<Node>),
    /// `if(c, t, e)`.
    Select(Box<Node>, Box<Node>, Box<Node>),
    /// `default(a, b)`.
    Default(Box<Node>, Box<Node>),
    /// An interval function of a channel.
    Interval(Func, u8),
}

impl Node {
    fn new(expr: Expr, at: usize, len: usize) -> Node {
        Node { expr, at, len }
    }

    /// Bytes of the program it emits.
    pub fn program_len(&self) -> usize {
        match &self.expr {
            Expr::Const(c) if i8::try_from(*c).is_ok() => 2,
            Expr::Const(_) => 5,
            Expr::Chan(_) | Expr::Interval(..) => 2,
            Expr::NoValue => 1,
            Expr::Unary(_, a) => a.program_len() + 1,
            Expr::Binary(_, a, b) | Expr::Default(a, b) => a.program_len() + b.program_len() + 1,
            Expr::Select(c, t, e) => c.program_len() + t.program_len() + e.program_len() + 1,
        }
    }

    /// Deepest evaluation stack of its program.
    pub fn stack_depth(&self) -> usize {
        match &self.expr {
            Expr::Const(_) | Expr::Chan(_) | Expr::NoValue | Expr::Interval(..) => 1,
            Expr::Unary(_, a) => a.stack_depth(),
            Expr::Binary(_, a, b) | Expr::Default(a, b) => a.stack_depth().max(1 + b.stack_depth()),
            Expr::Select(c, t, e) => c
                .stack_depth()
                .max(1 + t.stack_depth())
                .max(2 + e.stack_depth()),
        }
    }

    /// Appends its program to `out`, and `(program offset, node)` of every instruction to
    /// `origin` so that verification errors can point into the text.
    fn emit<'n>(&'n self, out: &mut Vec<u8>, origin: &mut Vec<(usize, &'n Node)>) {
        let start = out.len();
        match &self.expr {
            Expr::Const(c) => match i8::try_from(*c) {
                Ok(small) => out.extend([op::CONST8, small as u8]),
                Err(_) => {
                    out.push(op::CONST32);
                    out.extend(c.to_be_bytes());
                }
            },
            Expr::Chan(c) => out.extend([op::CHAN, *c]),
            Expr::NoValue => out.push(op::NONE),
            Expr::Interval(f, c) => out.extend([interval_op(*f), *c]),
            Expr::Unary(o, a) => {
                a.emit(out, origin);
                origin.push((out.len(), self));
                out.push(*o);
                return;
            }
            Expr::Binary(o, a, b) => {
                a.emit(out, origin);
                b.emit(out, origin);
                origin.push((out.len(), self));
                out.push(*o);
                return;
            }
            Expr::Default(a, b) => {
                a.emit(out, origin);
                b.emit(out, origin);
                origin.push((out.len(), self));
                out.push(op::DEFAULT);
                return;
            }
            Expr::Select(c, t, e) => {
                c.emit(out, origin);
                t.emit(out, origin);
                e.emit(out, origin);
                origin.push((out.len(), self));
                out.push(op::SELECT);
                return;
            }
        }
        origin.push((start, self));
    }
}

fn interval_op(f: Func) -> u8 {
    match f {
        Func::Delta => op::DELTA,
        Func::Rate => op::RATE,
        Func::Mean => op::MEAN,
        Func::Min => op::IMIN,
        Func::Max => op::IMAX,
    }
}

const INTERVAL_NAMES: [(&str, Func); 5] = [
    ("delta", Func::Delta),
    ("rate", Func::Rate),
    ("mean", Func::Mean),
    ("min_of", Func::Min),
    ("max_of", Func::Max),
];

fn interval_name(f: Func) -> &'static str {
    INTERVAL_NAMES
        .iter()
        .find(|(_, g)| *g == f)
        .map_or("delta", |(n, _)| n)
}

/// Binary operators written between their operands: symbol, opcode, precedence level.
const INFIX: [(&str, u8, u8); 12] = [
    ("or", op::OR, 1),
    ("and", op::AND, 2),
    ("==", op::EQ, 4),
    ("!=", op::NE, 4),
    ("<", op::LT, 4),
    ("<=", op::LE, 4),
    (">", op::GT, 4),
    (">=", op::GE, 4),
    ("+", op::ADD, 5),
    ("-", op::SUB, 5),
    ("*", op::MUL, 6),
    ("/", op::DIV, 6),
];

/// Precedence of `not` (a prefix operator looser than comparisons).
const NOT_LEVEL: u8 = 3;
/// Precedence of unary minus.
const NEG_LEVEL: u8 = 7;
/// Precedence of constants, references and function calls.
const PRIMARY_LEVEL: u8 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Int(u64),
    /// `#n` or `chn`.
    Index(u64),
    /// `"name"`.
    Name(String),
    Ident(String),
    /// Punctuation and operator symbols.
    Sym(&'static str),
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Int(n) => format!("{n}"),
        Tok::Index(n) => format!("#{n}"),
        Tok::Name(n) => format!("{n:?}"),
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Sym(s) => format!("'{s}'"),
        Tok::End => "the end".into(),
    }
}

/// Splits the text into tokens with their offsets and lengths.
fn lex(text: &str) -> Result<Vec<(Tok, usize, usize)>, CompileError> {
    const SYMS: [&str; 14] = [
        "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "(", ")", ",", "!",
    ];
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let digits = |from: usize| {
            let end = b[from..]
                .iter()
                .position(|d| !d.is_ascii_digit())
                .map_or(b.len(), |p| from + p);
            (end, &text[from..end])
        };
        let number = |s: &str, at: usize| -> Result<u64, CompileError> {
            // Digits beyond u64 are out of every range; the caller names the range.
            s.parse::<u64>()
                .or_else(|_| fail(at, "number out of range"))
        };
        let tok = if c.is_ascii_digit() {
            let (end, s) = digits(i);
            if b.get(end)
                .is_some_and(|d| d.is_ascii_alphabetic() || *d == b'_')
            {
                return fail(end, "expected an operator after a number");
            }
            i = end;
            Tok::Int(number(s, start)?)
        } else if c == b'#' {
            let (end, s) = digits(i + 1);
            if s.is_empty() {
                return fail(i + 1, "expected a channel number after '#'");
            }
            i = end;
            Tok::Index(number(s, start)?)
        } else if c == b'"' {
            let Some(len) = text[i + 1..].find('"') else {
                return fail(start, "unterminated channel name (missing '\"')");
            };
            i += len + 2;
            Tok::Name(text[start + 1..start + 1 + len].to_owned())
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let end = b[i..]
                .iter()
                .position(|d| !(d.is_ascii_alphanumeric() || *d == b'_'))
                .map_or(b.len(), |p| i + p);
            let word = &text[i..end];
            i = end;
            match word.strip_prefix("ch") {
                Some(n) if !n.is_empty() && n.bytes().all(|d| d.is_ascii_digit()) => {
                    Tok::Index(number(n, start)?)
                }
                _ => Tok::Ident(word.to_owned()),
            }
        } else if let Some(s) = SYMS.iter().find(|s| b[i..].starts_with(s.as_bytes())) {
            if *s == "!" {
                return fail(start, "unexpected '!'; write 'not' or '!='");
            }
            i += s.len();
            Tok::Sym(s)
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return fail(start, format!("unexpected character {ch:?}"));
        };
        out.push((tok, start, i - start));
    }
    out.push((Tok::End, text.len(), 0));
    Ok(out)
}

struct Parser<'a, R> {
    toks: Vec<(Tok, usize, usize)>,
    pos: usize,
    depth: usize,
    resolve: &'a R,
}

impl<R: Fn(&str) -> Option<u8>> Parser<'_, R> {
    fn peek(&self) -> &(Tok, usize, usize) {
        // `lex` always ends with `End`, and `next` never moves past it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> (Tok, usize, usize) {
        let t = self.peek().clone();
        if t.0 != Tok::End {
            self.pos += 1;
        }
        t
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(&self.peek().0, Tok::Sym(x) if *x == s)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(&self.peek().0, Tok::Ident(x) if x == w)
    }

    fn expect(&mut self, s: &str) -> Result<(), CompileError> {
        if self.is_sym(s) {
            self.next();
            Ok(())
        } else {
            let (t, at, _) = self.peek();
            fail(*at, format!("expected '{s}', found {}", describe(t)))
        }
    }

    fn enter(&mut self) -> Result<(), CompileError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return fail(self.peek().1, format!("nested deeper than {MAX_NESTING}"));
        }
        Ok(())
    }

    /// Left-associative binary operators of precedence `level` over operands of `level + 1`.
    fn binary(&mut self, level: u8) -> Result<Node, CompileError> {
        let mut left = self.level(level + 1)?;
        loop {
            let (tok, at, len) = self.peek().clone();
            let found = INFIX.iter().find(|(s, _, l)| {
                *l == level
                    && match &tok {
                        Tok::Sym(x) => x == s,
                        Tok::Ident(x) => x == s,
                        _ => false,
                    }
            });
            let Some((_, opcode, _)) = found else {
                return Ok(left);
            };
            self.next();
            let right = self.level(level + 1)?;
            // The operator's own position is where verification errors of this node point.
            left = Node::new(
                Expr::Binary(*opcode, Box::new(left), Box::new(right)),
                at,
                len,
            );
        }
    }

    fn level(&mut self, level: u8) -> Result<Node, CompileError> {
        match level {
            NOT_LEVEL => {
                if self.is_word("not") {
                    let (_, at, len) = self.next();
                    let a = self.nested(|p| p.level(NOT_LEVEL))?;
                    Ok(Node::new(Expr::Unary(op::NOT, Box::new(a)), at, len))
                } else {
                    self.level(NOT_LEVEL + 1)
                }
            }
            NEG_LEVEL => self.unary(),
            PRIMARY_LEVEL => self.primary(),
            _ => self.binary(level),
        }
    }

    /// Runs `f` one nesting level deeper (parentheses, calls, prefix operators: the places
    /// where the parser recurses for the same text level).
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, CompileError>,
    ) -> Result<T, CompileError> {
        self.enter()?;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn unary(&mut self) -> Result<Node, CompileError> {
        if !self.is_sym("-") {
            return self.primary();
        }
        let (_, at, _) = self.next();
        if let (Tok::Int(n), _, len) = self.peek().clone() {
            self.next();
            let v = i64::try_from(n).ok().map(|n| -n);
            let Some(c) = v.and_then(|v| i32::try_from(v).ok()) else {
                return fail(at, "constant outside -2147483648..=2147483647");
            };
            return Ok(Node::new(Expr::Const(c), at, len + 1));
        }
        let a = self.nested(|p| p.unary())?;
        Ok(Node::new(Expr::Unary(op::NEG, Box::new(a)), at, 1))
    }

    fn channel_ref(&self, tok: &Tok, at: usize) -> Result<Option<u8>, CompileError> {
        match tok {
            Tok::Index(n) => match u8::try_from(*n) {
                Ok(c) => Ok(Some(c)),
                Err(_) => fail(at, format!("channel #{n} past 255")),
            },
            Tok::Name(name) => match (self.resolve)(name) {
                Some(c) => Ok(Some(c)),
                None => fail(at, format!("no channel is named {name:?}")),
            },
            _ => Ok(None),
        }
    }

    fn args(&mut self, n: usize) -> Result<Vec<Node>, CompileError> {
        self.expect("(")?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            if i > 0 {
                self.expect(",")?;
            }
            out.push(self.nested(|p| p.level(1))?);
        }
        self.expect(")")?;
        Ok(out)
    }

    fn primary(&mut self) -> Result<Node, CompileError> {
        let (tok, at, len) = self.next();
        if let Some(c) = self.channel_ref(&tok, at)? {
            return Ok(Node::new(Expr::Chan(c), at, len));
        }
        let node = |e| Ok(Node::new(e, at, len));
        match tok {
            Tok::Int(n) => match i32::try_from(n) {
                Ok(c) => node(Expr::Const(c)),
                Err(_) => fail(at, "constant outside -2147483648..=2147483647"),
            },
            Tok::Sym("(") => {
                let e = self.nested(|p| p.level(1))?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Ident(w) => match w.as_str() {
                "none" => node(Expr::NoValue),
                "min" | "max" | "default" => {
                    let mut a = self.args(2)?;
                    let (b, a) = (a.pop(), a.pop());
                    let (Some(a), Some(b)) = (a, b) else {
                        return fail(at, "expected two arguments");
                    };
                    let (a, b) = (Box::new(a), Box::new(b));
                    node(match w.as_str() {
                        "min" => Expr::Binary(op::MIN, a, b),
                        "max" => Expr::Binary(op::MAX, a, b),
                        _ => Expr::Default(a, b),
                    })
                }
                "abs" => {
                    let a = self.args(1)?.pop();
                    let Some(a) = a else {
                        return fail(at, "expected one argument");
                    };
                    node(Expr::Unary(op::ABS, Box::new(a)))
                }
                "if" => {
                    let mut a = self.args(3)?;
                    let (e, t, c) = (a.pop(), a.pop(), a.pop());
                    let (Some(c), Some(t), Some(e)) = (c, t, e) else {
                        return fail(at, "expected three arguments");
                    };
                    node(Expr::Select(Box::new(c), Box::new(t), Box::new(e)))
                }
                _ => {
                    if let Some((_, f)) = INTERVAL_NAMES.iter().find(|(n, _)| *n == w) {
                        self.expect("(")?;
                        let (t, ref_at, ref_len) = self.next();
                        let Some(c) = self.channel_ref(&t, ref_at)? else {
                            return fail(
                                ref_at,
                                format!(
                                    "expected a channel reference (#n or \"name\") in {w}(), \
                                     found {}",
                                    describe(&t)
                                ),
                            );
                        };
                        self.expect(")")?;
                        return Ok(Node::new(Expr::Interval(*f, c), ref_at, ref_len));
                    }
                    fail(
                        at,
                        format!("unknown name '{w}' (channel names are written in double quotes)"),
                    )
                }
            },
            other => fail(at, format!("expected a value, found {}", describe(&other))),
        }
    }
}

/// Parses `text` into a tree; `resolve` gives the index of a channel name.
pub fn parse(text: &str, resolve: &impl Fn(&str) -> Option<u8>) -> Result<Node, CompileError> {
    if text.len() > MAX_TEXT {
        return fail(MAX_TEXT, format!("longer than {MAX_TEXT} bytes"));
    }
    let mut p = Parser {
        toks: lex(text)?,
        pos: 0,
        depth: 0,
        resolve,
    };
    if p.peek().0 == Tok::End {
        return fail(0, "expected an expression");
    }
    let e = p.level(1)?;
    match p.peek() {
        (Tok::End, ..) => Ok(e),
        (t, at, _) => fail(*at, format!("expected an operator, found {}", describe(t))),
    }
}

/// `text` with every reference to a channel by number (`#n` or `chn`) replaced by
/// `replace(n)`, everything else kept byte for byte: how an editor keeps an expression pointing
/// at the same channels when rows move. `None` if `text` does not even split into tokens (the
/// editor then leaves it as typed, and the check reports it).
pub fn renumber(text: &str, replace: impl Fn(u64) -> String) -> Option<String> {
    let toks = lex(text).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut kept = 0;
    for (tok, at, len) in toks {
        if let Tok::Index(n) = tok {
            out.push_str(&text[kept..at]);
            out.push_str(&replace(n));
            kept = at + len;
        }
    }
    out.push_str(&text[kept..]);
    Some(out)
}

/// Compiles `text` for computed channel `scope.index` of a map: parses it, checks its size and
/// depth, emits the program and verifies it with the protocol's verifier.
pub fn compile<F: Fn(u8) -> bool>(
    text: &str,
    scope: &Scope<F>,
    resolve: &impl Fn(&str) -> Option<u8>,
) -> Result<Vec<u8>, CompileError> {
    let tree = parse(text, resolve)?;
    let len = tree.program_len();
    if len > MAX_PROGRAM {
        return fail(
            0,
            format!("the program would take {len} bytes, at most {MAX_PROGRAM}; simplify it"),
        );
    }
    let depth = tree.stack_depth();
    if depth > MAX_STACK {
        return fail(
            0,
            format!(
                "the program would need {depth} stack values, at most {MAX_STACK}; \
                 nest less deeply on the right"
            ),
        );
    }
    let mut code = Vec::with_capacity(len);
    let mut origin = Vec::new();
    tree.emit(&mut code, &mut origin);
    if let Err(e) = expr::verify(&code, scope) {
        let node = origin
            .iter()
            .find(|(off, _)| *off == usize::from(e.at))
            .map(|(_, n)| *n);
        let (at, written) = node.map_or((0, String::new()), |n| {
            (n.at, text.get(n.at..n.at + n.len).unwrap_or("").to_owned())
        });
        let message = match e.kind {
            ExprErrorKind::UnknownChannel(c) => format!(
                "{written} (channel {c}) does not exist: the map has {} channels",
                scope.count
            ),
            ExprErrorKind::SelfReference(c) => {
                format!("{written} (channel {c}) is this channel itself")
            }
            ExprErrorKind::ForwardReference(c) => format!(
                "{written} (channel {c}) is a computed channel after this one; a computed \
                 channel may only use computed channels before it"
            ),
            _ => format!("the program does not verify: {e}"),
        };
        return fail(at, message);
    }
    Ok(code)
}

/// Why [`decompile`] cannot show a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecompileError(pub expr::ExprError);

impl std::fmt::Display for DecompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a program: {}", self.0)
    }
}

impl std::error::Error for DecompileError {}

/// The tree of a program (its stack structure), or why it has none.
pub fn tree(code: &[u8]) -> Result<Node, DecompileError> {
    let err = |at: usize, kind| {
        DecompileError(expr::ExprError {
            at: at.min(255) as u8,
            kind,
        })
    };
    if code.is_empty() {
        return Err(err(0, ExprErrorKind::Empty));
    }
    if code.len() > MAX_PROGRAM {
        return Err(err(MAX_PROGRAM, ExprErrorKind::TooLong));
    }
    let mut stack: Vec<Node> = Vec::new();
    let mut at = 0;
    while at < code.len() {
        let (o, next) = expr::decode(code, at).map_err(|_| err(at, ExprErrorKind::Truncated))?;
        let mut pop = |n: usize| {
            if stack.len() < n {
                return Err(err(at, ExprErrorKind::StackUnderflow));
            }
            Ok(stack.split_off(stack.len() - n))
        };
        let e = match o {
            Op::Const(c) => Expr::Const(c),
            Op::Chan(c) => Expr::Chan(c),
            Op::NoValue => Expr::NoValue,
            Op::Interval(f, c) => Expr::Interval(f, c),
            Op::Unary(u) => {
                let [a]: [Node; 1] = pop(1)?
                    .try_into()
                    .map_err(|_| err(at, ExprErrorKind::StackUnderflow))?;
                Expr::Unary(u, Box::new(a))
            }
            Op::Binary(b) => {
                let [x, y]: [Node; 2] = pop(2)?
                    .try_into()
                    .map_err(|_| err(at, ExprErrorKind::StackUnderflow))?;
                Expr::Binary(b, Box::new(x), Box::new(y))
            }
            Op::Default => {
                let [x, y]: [Node; 2] = pop(2)?
                    .try_into()
                    .map_err(|_| err(at, ExprErrorKind::StackUnderflow))?;
                Expr::Default(Box::new(x), Box::new(y))
            }
            Op::Select => {
                let [c, t, e]: [Node; 3] = pop(3)?
                    .try_into()
                    .map_err(|_| err(at, ExprErrorKind::StackUnderflow))?;
                Expr::Select(Box::new(c), Box::new(t), Box::new(e))
            }
            Op::Unknown(u) => return Err(err(at, ExprErrorKind::UnknownOp(u))),
        };
        stack.push(Node::new(e, at, next - at));
        at = next;
    }
    match <[Node; 1]>::try_from(stack) {
        Ok([n]) => Ok(n),
        Err(_) => Err(err(code.len(), ExprErrorKind::NotOneResult)),
    }
}

/// The canonical text of a program: channels as `#n`, or as `"name"` where `name` gives one
/// (a name with a `"` in it is shown as `#n`). Compiling it (with names resolving back) gives
/// the same bytes for every program whose constants are in their shortest encoding, which is
/// every program [`compile`] emits; a `const32` holding a small value shows that value.
pub fn decompile(
    code: &[u8],
    name: &impl Fn(u8) -> Option<String>,
) -> Result<String, DecompileError> {
    let t = tree(code)?;
    let mut out = String::new();
    show(&t, 0, name, &mut out);
    Ok(out)
}

fn level_of(e: &Expr) -> u8 {
    match e {
        Expr::Binary(o, ..) => INFIX
            .iter()
            .find(|(_, c, _)| c == o)
            .map_or(PRIMARY_LEVEL, |(_, _, l)| *l),
        Expr::Unary(op::NOT, _) => NOT_LEVEL,
        Expr::Unary(op::NEG, _) => NEG_LEVEL,
        // A negative constant starts with '-', but the parser reads `-5` as one constant in
        // every place a unary minus may stand, so it needs no parentheses below NEG_LEVEL.
        _ => PRIMARY_LEVEL,
    }
}

fn show(n: &Node, min: u8, name: &impl Fn(u8) -> Option<String>, out: &mut String) {
    let level = level_of(&n.expr);
    let paren = level < min;
    if paren {
        out.push('(');
    }
    let chan = |c: u8, out: &mut String| match name(c).filter(|s| !s.contains('"')) {
        Some(s) => {
            let _ = write!(out, "\"{s}\"");
        }
        None => {
            let _ = write!(out, "#{c}");
        }
    };
    let call = |f: &str, args: &[&Node], out: &mut String| {
        out.push_str(f);
        out.push('(');
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            show(a, 0, name, out);
        }
        out.push(')');
    };
    match &n.expr {
        Expr::Const(c) => {
            let _ = write!(out, "{c}");
        }
        Expr::Chan(c) => chan(*c, out),
        Expr::NoValue => out.push_str("none"),
        Expr::Interval(f, c) => {
            out.push_str(interval_name(*f));
            out.push('(');
            chan(*c, out);
            out.push(')');
        }
        Expr::Unary(op::NOT, a) => {
            out.push_str("not ");
            show(a, NOT_LEVEL, name, out);
        }
        Expr::Unary(op::NEG, a) => {
            out.push('-');
            // `-5` would read as the constant -5, so a negated positive constant keeps its
            // parentheses, `-(5)`, as any text for it must. A negated 0 or negative constant is
            // written without them (`--0`, `--5`: the negation of -0, of -5), as it may be: the
            // text then nests no deeper than any other text of the same program, so it compiles
            // again within `MAX_NESTING` (found by the fuzz target `server_expr`).
            match a.expr {
                Expr::Const(0) => out.push_str("-0"),
                Expr::Const(c) if c > 0 => show(a, PRIMARY_LEVEL + 1, name, out),
                _ => show(a, NEG_LEVEL, name, out),
            }
        }
        Expr::Unary(_, a) => call("abs", &[a], out),
        Expr::Binary(op::MIN, a, b) => call("min", &[a, b], out),
        Expr::Binary(op::MAX, a, b) => call("max", &[a, b], out),
        Expr::Binary(o, a, b) => {
            let sym = INFIX
                .iter()
                .find(|(_, c, _)| c == o)
                .map_or("?", |(s, ..)| s);
            show(a, level, name, out);
            let _ = write!(out, " {sym} ");
            show(b, level + 1, name, out);
        }
        Expr::Default(a, b) => call("default", &[a, b], out),
        Expr::Select(c, t, e) => call("if", &[c, t, e], out),
    }
    if paren {
        out.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scope(index: u8, count: usize) -> Scope<impl Fn(u8) -> bool> {
        // Channels 5 and up are computed in these tests.
        Scope {
            index,
            count,
            is_computed: |c: u8| c >= 5,
        }
    }

    fn names(s: &str) -> Option<u8> {
        ["Power L1", "Power L2", "Energy"]
            .iter()
            .position(|n| *n == s)
            .map(|i| i as u8)
    }

    fn c(text: &str) -> Result<Vec<u8>, String> {
        compile(text, &scope(5, 8), &names).map_err(|e| e.to_string())
    }

    /// Found by the fuzz target `server_expr`: 65 minus signs before a constant compile (64
    /// negations at the nesting limit, the last one the constant's sign), and the decompiled
    /// text must compile again, to the same bytes.
    #[test]
    fn negated_constants_decompile_within_the_nesting_limit() {
        for (minus, digit) in [
            (65, "0"),
            (64, "0"),
            (65, "7"),
            (66, "7"),
            (2, "5"),
            (1, "5"),
        ] {
            let text = format!("3 - {}{digit}", "-".repeat(minus));
            let Ok(program) = c(&text) else {
                assert!(minus > 65, "{text} should compile");
                continue;
            };
            let again = decompile(&program, &|_| None).unwrap();
            assert_eq!(c(&again), Ok(program), "{text} -> {again}");
        }
        assert_eq!(
            decompile(&[op::CONST8, 0xFB, op::NEG], &|_| None).unwrap(),
            "--5"
        );
        assert_eq!(
            decompile(&[op::CONST8, 5, op::NEG], &|_| None).unwrap(),
            "-(5)"
        );
    }

    #[test]
    fn compiles_to_the_opcode_table() {
        assert_eq!(
            c("#0 + ch1 * 2").unwrap(),
            [op::CHAN, 0, op::CHAN, 1, op::CONST8, 2, op::MUL, op::ADD]
        );
        assert_eq!(
            c("(\"Power L1\" + \"Power L2\") / -1000").unwrap(),
            [
                op::CHAN,
                0,
                op::CHAN,
                1,
                op::ADD,
                op::CONST32,
                0xFF,
                0xFF,
                0xFC,
                0x18,
                op::DIV
            ]
        );
        assert_eq!(c("-128").unwrap(), [op::CONST8, 0x80]);
        assert_eq!(c("-(128)").unwrap(), [op::CONST32, 0, 0, 0, 128, op::NEG]);
        assert_eq!(c("-2147483648").unwrap(), [op::CONST32, 0x80, 0, 0, 0]);
        assert_eq!(
            c("if(#0 > 0 and not #1 <= 3, abs(#2), default(none, 7))").unwrap(),
            [
                op::CHAN,
                0,
                op::CONST8,
                0,
                op::GT,
                op::CHAN,
                1,
                op::CONST8,
                3,
                op::LE,
                op::NOT,
                op::AND,
                op::CHAN,
                2,
                op::ABS,
                op::NONE,
                op::CONST8,
                7,
                op::DEFAULT,
                op::SELECT
            ]
        );
        assert_eq!(
            c("min(delta(\"Energy\"), max(rate(#2), mean(#3))) - min_of(#4) + max_of(#0)").unwrap(),
            [
                op::DELTA,
                2,
                op::RATE,
                2,
                op::MEAN,
                3,
                op::MAX,
                op::MIN,
                op::IMIN,
                4,
                op::SUB,
                op::IMAX,
                0,
                op::ADD
            ]
        );
        assert_eq!(
            c("#0 == 1 or #0 != 2 and #1 < 3").unwrap(),
            [
                op::CHAN,
                0,
                op::CONST8,
                1,
                op::EQ,
                op::CHAN,
                0,
                op::CONST8,
                2,
                op::NE,
                op::CHAN,
                1,
                op::CONST8,
                3,
                op::LT,
                op::AND,
                op::OR
            ]
        );
        assert_eq!(
            c("1 - 2 - 3").unwrap(),
            [1, 1, 1, 2, op::SUB, 1, 3, op::SUB]
        );
    }

    #[test]
    fn errors_say_where_and_what_was_expected() {
        assert_eq!(
            c("min(#0, #1"),
            Err("expected ')', found the end at 10".into())
        );
        assert_eq!(
            c("(#0 + #1"),
            Err("expected ')', found the end at 8".into())
        );
        assert_eq!(
            c("#0 +"),
            Err("expected a value, found the end at 4".into())
        );
        assert_eq!(c(""), Err("expected an expression at 0".into()));
        assert_eq!(
            c("#0 #1"),
            Err("expected an operator, found #1 at 3".into())
        );
        assert_eq!(
            c("\"Power L3\" + 1"),
            Err("no channel is named \"Power L3\" at 0".into())
        );
        assert_eq!(
            c("1 + foo"),
            Err("unknown name 'foo' (channel names are written in double quotes) at 4".into())
        );
        assert_eq!(
            c("delta(1)"),
            Err("expected a channel reference (#n or \"name\") in delta(), found 1 at 6".into())
        );
        assert_eq!(
            c("#0 ! #1"),
            Err("unexpected '!'; write 'not' or '!=' at 3".into())
        );
        assert_eq!(c("#0 ? 1"), Err("unexpected character '?' at 3".into()));
        assert_eq!(
            c("\"Power"),
            Err("unterminated channel name (missing '\"') at 0".into())
        );
        assert_eq!(
            c("2147483648"),
            Err("constant outside -2147483648..=2147483647 at 0".into())
        );
        assert_eq!(c("#256"), Err("channel #256 past 255 at 0".into()));
        assert_eq!(
            c("12ab"),
            Err("expected an operator after a number at 2".into())
        );
    }

    #[test]
    fn references_are_checked_against_the_map() {
        assert_eq!(
            c("#0 + #5"),
            Err("#5 (channel 5) is this channel itself at 5".into())
        );
        assert_eq!(
            c("1 + delta(ch6)"),
            Err(
                "ch6 (channel 6) is a computed channel after this one; a computed channel may \
                 only use computed channels before it at 10"
                    .into()
            )
        );
        assert_eq!(
            c("#9"),
            Err("#9 (channel 9) does not exist: the map has 8 channels at 0".into())
        );
        // A later channel that is not computed is fine.
        assert!(compile("#4", &scope(3, 8), &names).is_ok());
        assert!(compile("#6", &scope(7, 8), &names).is_ok());
    }

    #[test]
    fn size_and_depth_are_bounded_with_a_clear_message() {
        let long = vec!["1000"; 30].join(" + ");
        assert_eq!(
            c(&long),
            Err("the program would take 179 bytes, at most 128; simplify it at 0".into())
        );
        let deep = format!("{}1{}", "1 + (".repeat(16), ")".repeat(16));
        assert_eq!(
            c(&deep),
            Err(
                "the program would need 17 stack values, at most 16; nest less deeply on the \
                 right at 0"
                    .into()
            )
        );
        let nested = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(
            c(&nested),
            Err(format!("nested deeper than {MAX_NESTING} at 65"))
        );
        assert!(c(&"-".repeat(5000)).is_err());
    }

    #[test]
    fn decompiles_canonically() {
        let show = |t: &str| {
            let code = c(t).unwrap();
            decompile(&code, &|_| None).unwrap()
        };
        assert_eq!(show("(#0+ch1)*2"), "(#0 + #1) * 2");
        assert_eq!(show("#0 - (#1 - #2)"), "#0 - (#1 - #2)");
        assert_eq!(show("- - 5"), "--5");
        assert_eq!(show("-(5)"), "-(5)");
        assert_eq!(show("--0"), "--0");
        assert_eq!(show("not not (#0 < 1)"), "not not #0 < 1");
        assert_eq!(show("-(#0 + 1)"), "-(#0 + 1)");
        assert_eq!(show("(not #0) + 1"), "(not #0) + 1");
        assert_eq!(show("if(#0, delta(#1), none)"), "if(#0, delta(#1), none)");
        let named = decompile(&c("\"Energy\" + #4").unwrap(), &|i| {
            (i == 2).then(|| "Energy".to_owned())
        });
        assert_eq!(named.unwrap(), "\"Energy\" + #4");
        assert!(decompile(&[op::ADD], &|_| None).is_err());
        assert!(decompile(&[op::CONST8, 1, op::CONST8], &|_| None).is_err());
        assert!(decompile(&[0xEE], &|_| None).is_err());
        assert!(decompile(&[op::CONST8, 1, op::CONST8, 2], &|_| None).is_err());
    }

    fn leaf() -> impl Strategy<Value = Node> {
        prop_oneof![
            any::<i32>().prop_map(Expr::Const),
            (-3i32..3).prop_map(Expr::Const),
            (0u8..5).prop_map(Expr::Chan),
            Just(Expr::NoValue),
            (0u8..5, 0usize..5).prop_map(|(c, f)| Expr::Interval(INTERVAL_NAMES[f].1, c)),
        ]
        .prop_map(|e| Node::new(e, 0, 0))
    }

    fn tree_strategy() -> impl Strategy<Value = Node> {
        leaf().prop_recursive(6, 40, 3, |inner| {
            let b = |n: Node| Box::new(n);
            prop_oneof![
                (
                    prop::sample::select(vec![op::ABS, op::NEG, op::NOT]),
                    inner.clone()
                )
                    .prop_map(move |(o, a)| Expr::Unary(o, b(a))),
                (
                    prop::sample::select(
                        (op::ADD..=op::MAX)
                            .chain(op::EQ..=op::OR)
                            .collect::<Vec<_>>()
                    ),
                    inner.clone(),
                    inner.clone()
                )
                    .prop_map(move |(o, x, y)| Expr::Binary(o, b(x), b(y))),
                (inner.clone(), inner.clone()).prop_map(move |(x, y)| Expr::Default(b(x), b(y))),
                (inner.clone(), inner.clone(), inner).prop_map(move |(x, y, z)| Expr::Select(
                    b(x),
                    b(y),
                    b(z)
                )),
            ]
            .prop_map(|e| Node::new(e, 0, 0))
        })
    }

    proptest! {
        #[test]
        fn decompiled_text_compiles_to_the_same_bytes(t in tree_strategy(), named in any::<bool>()) {
            prop_assume!(t.program_len() <= MAX_PROGRAM && t.stack_depth() <= MAX_STACK);
            let mut code = Vec::new();
            t.emit(&mut code, &mut Vec::new());
            let label = |i: u8| named.then(|| format!("ch {i}"));
            let text = decompile(&code, &label).unwrap();
            let back = compile(&text, &scope(5, 8), &|s: &str| {
                s.strip_prefix("ch ").and_then(|n| n.parse().ok())
            });
            prop_assert_eq!(back.as_deref(), Ok(&code[..]), "{}", text);
        }

        #[test]
        fn compiling_any_text_never_panics(s in "\\PC{0,200}") {
            let _ = c(&s);
        }

        #[test]
        fn compiling_expression_like_text_never_panics(
            s in "[-+*/() ,#0-9a-z\"<>=!]{0,120}"
        ) {
            let _ = c(&s);
        }

        #[test]
        fn decompiling_any_bytes_never_panics(b in prop::collection::vec(any::<u8>(), 0..140)) {
            if let Ok(text) = decompile(&b, &|_| None) {
                prop_assert!(parse(&text, &|_| None).is_ok(), "{}", text);
            }
        }
    }

    #[test]
    fn renumbering_rewrites_references_only() {
        let moved = |n: u64| format!("#{}", [2, 0, 1][n as usize]);
        assert_eq!(
            renumber("#0 + ch1*2 - \"#1 ch0\" + max(#2, 10)", moved).as_deref(),
            Some("#2 + #0*2 - \"#1 ch0\" + max(#1, 10)")
        );
        assert_eq!(renumber("chx + 1", moved).as_deref(), Some("chx + 1"));
        assert_eq!(renumber("#0 + \"open", moved), None);
    }
}
