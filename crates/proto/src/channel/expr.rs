//! Expression programs of computed channels (PROTOCOL.md 17.3).
//!
//! A program is a short byte string of stack-machine instructions, evaluated once per sample on
//! the controller so that computed channels work offline. The format has **no jumps at all**:
//! evaluation is one forward pass over at most [`MAX_PROGRAM`] bytes, so no program can loop.
//! `if-then-else` is [`op::SELECT`], which picks one of two values already computed.
//!
//! Values on the stack are `Option<i64>`: `None` is "no value" (a failed source, a division by
//! zero, an overflow, an unknown channel). Every operator given a `None` yields `None`, except
//! [`op::DEFAULT`], which exists to replace it. A result outside `i32` is `None`. Never 0.
//!
//! Two layers:
//! * [`verify`] checks a program before it is used: known opcodes, complete operands, stack never
//!   below its inputs nor above [`MAX_STACK`], exactly one result, every channel operand a known
//!   channel that is evaluated before this one.
//! * [`eval`] runs any byte string, verified or not, without panicking, looping or reading out of
//!   bounds: whatever does not make sense gives `None`.

/// Longest program, bytes.
pub const MAX_PROGRAM: usize = 128;
/// Deepest evaluation stack.
pub const MAX_STACK: usize = 16;

/// Opcodes. Operands follow the opcode byte; integers are big-endian.
pub mod op {
    /// Push a constant, operand i8.
    pub const CONST8: u8 = 0x01;
    /// Push a constant, operand i32.
    pub const CONST32: u8 = 0x02;
    /// Push the current value of a channel, operand u8 channel index.
    pub const CHAN: u8 = 0x03;
    /// Push "no value".
    pub const NONE: u8 = 0x04;
    /// a + b.
    pub const ADD: u8 = 0x10;
    /// a - b.
    pub const SUB: u8 = 0x11;
    /// a * b.
    pub const MUL: u8 = 0x12;
    /// a / b, truncated toward zero; b = 0 gives no value.
    pub const DIV: u8 = 0x13;
    /// min(a, b).
    pub const MIN: u8 = 0x14;
    /// max(a, b).
    pub const MAX: u8 = 0x15;
    /// |a|.
    pub const ABS: u8 = 0x16;
    /// -a.
    pub const NEG: u8 = 0x17;
    /// a == b (1 or 0).
    pub const EQ: u8 = 0x20;
    /// a != b.
    pub const NE: u8 = 0x21;
    /// a < b.
    pub const LT: u8 = 0x22;
    /// a <= b.
    pub const LE: u8 = 0x23;
    /// a > b.
    pub const GT: u8 = 0x24;
    /// a >= b.
    pub const GE: u8 = 0x25;
    /// a != 0 and b != 0.
    pub const AND: u8 = 0x26;
    /// a != 0 or b != 0.
    pub const OR: u8 = 0x27;
    /// a == 0.
    pub const NOT: u8 = 0x28;
    /// c, t, e -> c != 0 ? t : e (no value if c has none).
    pub const SELECT: u8 = 0x30;
    /// a, b -> a if it has a value, else b.
    pub const DEFAULT: u8 = 0x31;
    /// Counter delta of a channel over the logging interval, operand u8 channel.
    pub const DELTA: u8 = 0x40;
    /// Rate: counter delta per hour, operand u8 channel.
    pub const RATE: u8 = 0x41;
    /// Mean of the samples of the interval, operand u8 channel.
    pub const MEAN: u8 = 0x42;
    /// Smallest sample of the interval, operand u8 channel.
    pub const IMIN: u8 = 0x43;
    /// Largest sample of the interval, operand u8 channel.
    pub const IMAX: u8 = 0x44;
}

/// A stateful function over the logging interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// Last sample minus the last sample of the previous interval (counters).
    Delta,
    /// `Delta * 3600 / interval seconds`.
    Rate,
    /// Mean of the samples.
    Mean,
    /// Smallest sample.
    Min,
    /// Largest sample.
    Max,
}

/// One decoded instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Push a constant.
    Const(i32),
    /// Push a channel's current value.
    Chan(u8),
    /// Push "no value".
    NoValue,
    /// A binary operator (its opcode).
    Binary(u8),
    /// A unary operator (its opcode).
    Unary(u8),
    /// Select.
    Select,
    /// Default.
    Default,
    /// A function over the interval of a channel.
    Interval(Func, u8),
    /// An opcode this implementation does not know.
    Unknown(u8),
}

impl Op {
    /// (values taken, values pushed).
    const fn arity(self) -> (usize, usize) {
        match self {
            Op::Const(_) | Op::Chan(_) | Op::NoValue | Op::Interval(..) => (0, 1),
            Op::Unary(_) => (1, 1),
            Op::Binary(_) | Op::Default => (2, 1),
            Op::Select => (3, 1),
            Op::Unknown(_) => (0, 0),
        }
    }
}

/// Why [`decode`] could not read an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The operand runs past the end.
    Truncated,
}

/// Decodes the instruction at `code[at..]`; returns it and the offset of the next one.
pub fn decode(code: &[u8], at: usize) -> Result<(Op, usize), DecodeError> {
    let opcode = *code.get(at).ok_or(DecodeError::Truncated)?;
    let operand = |n: usize| code.get(at + 1..at + 1 + n).ok_or(DecodeError::Truncated);
    let (op, len) = match opcode {
        op::CONST8 => (Op::Const(i32::from(operand(1)?[0] as i8)), 2),
        op::CONST32 => {
            let b = operand(4)?;
            (Op::Const(i32::from_be_bytes([b[0], b[1], b[2], b[3]])), 5)
        }
        op::CHAN => (Op::Chan(operand(1)?[0]), 2),
        op::NONE => (Op::NoValue, 1),
        op::ADD..=op::MAX | op::EQ..=op::OR => (Op::Binary(opcode), 1),
        op::ABS | op::NEG | op::NOT => (Op::Unary(opcode), 1),
        op::SELECT => (Op::Select, 1),
        op::DEFAULT => (Op::Default, 1),
        op::DELTA..=op::IMAX => {
            let f = match opcode {
                op::DELTA => Func::Delta,
                op::RATE => Func::Rate,
                op::MEAN => Func::Mean,
                op::IMIN => Func::Min,
                _ => Func::Max,
            };
            (Op::Interval(f, operand(1)?[0]), 2)
        }
        other => (Op::Unknown(other), 1),
    };
    Ok((op, at + len))
}

/// What is wrong with a program, and at which byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExprError {
    /// Offset of the offending instruction (the program length for end-of-program errors).
    pub at: u8,
    /// What.
    pub kind: ExprErrorKind,
}

/// The kinds of [`ExprError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExprErrorKind {
    /// No instruction at all.
    Empty,
    /// Longer than [`MAX_PROGRAM`].
    TooLong,
    /// An opcode this version does not define.
    UnknownOp(u8),
    /// An operand runs past the end.
    Truncated,
    /// An instruction takes more values than the stack holds.
    StackUnderflow,
    /// The stack would grow past [`MAX_STACK`].
    StackOverflow,
    /// The program leaves other than exactly one value.
    NotOneResult,
    /// A channel operand beyond the channel map.
    UnknownChannel(u8),
    /// A channel operand naming the computed channel itself.
    SelfReference(u8),
    /// A channel operand naming a computed channel evaluated later (a possible cycle).
    ForwardReference(u8),
}

impl core::fmt::Display for ExprError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "at byte {}: ", self.at)?;
        match self.kind {
            ExprErrorKind::Empty => f.write_str("empty program"),
            ExprErrorKind::TooLong => write!(f, "longer than {MAX_PROGRAM} bytes"),
            ExprErrorKind::UnknownOp(o) => write!(f, "unknown opcode {o:#04x}"),
            ExprErrorKind::Truncated => f.write_str("operand truncated"),
            ExprErrorKind::StackUnderflow => f.write_str("stack underflow"),
            ExprErrorKind::StackOverflow => write!(f, "stack deeper than {MAX_STACK}"),
            ExprErrorKind::NotOneResult => f.write_str("program must leave exactly one value"),
            ExprErrorKind::UnknownChannel(c) => write!(f, "channel {c} does not exist"),
            ExprErrorKind::SelfReference(c) => write!(f, "channel {c} refers to itself"),
            ExprErrorKind::ForwardReference(c) => {
                write!(f, "computed channel {c} is evaluated later")
            }
        }
    }
}

/// Where a program runs: the channel it computes and the map around it.
#[derive(Debug, Clone, Copy)]
pub struct Scope<F: Fn(u8) -> bool> {
    /// Index of the computed channel the program belongs to.
    pub index: u8,
    /// Number of channels in the map (operands must be below it).
    pub count: usize,
    /// Whether channel `i` is computed (then it must be below `index`).
    pub is_computed: F,
}

/// A program that passed [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program<'a> {
    code: &'a [u8],
}

impl<'a> Program<'a> {
    /// The bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.code
    }

    /// Evaluates it (see [`eval`]).
    pub fn eval(&self, env: &impl Env) -> Option<i32> {
        eval(self.code, env)
    }
}

/// Checks a program against the rules of the module documentation.
pub fn verify<'a, F: Fn(u8) -> bool>(
    code: &'a [u8],
    scope: &Scope<F>,
) -> Result<Program<'a>, ExprError> {
    let err = |at: usize, kind| ExprError {
        at: at.min(usize::from(u8::MAX)) as u8,
        kind,
    };
    if code.is_empty() {
        return Err(err(0, ExprErrorKind::Empty));
    }
    if code.len() > MAX_PROGRAM {
        return Err(err(MAX_PROGRAM, ExprErrorKind::TooLong));
    }
    let mut depth = 0usize;
    let mut at = 0;
    while at < code.len() {
        let (op, next) = decode(code, at).map_err(|_| err(at, ExprErrorKind::Truncated))?;
        match op {
            Op::Unknown(o) => return Err(err(at, ExprErrorKind::UnknownOp(o))),
            Op::Chan(c) | Op::Interval(_, c) => {
                if usize::from(c) >= scope.count {
                    return Err(err(at, ExprErrorKind::UnknownChannel(c)));
                }
                if c == scope.index {
                    return Err(err(at, ExprErrorKind::SelfReference(c)));
                }
                if c > scope.index && (scope.is_computed)(c) {
                    return Err(err(at, ExprErrorKind::ForwardReference(c)));
                }
            }
            _ => {}
        }
        let (take, push) = op.arity();
        depth = depth
            .checked_sub(take)
            .ok_or(err(at, ExprErrorKind::StackUnderflow))?
            + push;
        if depth > MAX_STACK {
            return Err(err(at, ExprErrorKind::StackOverflow));
        }
        at = next;
    }
    if depth != 1 {
        return Err(err(code.len(), ExprErrorKind::NotOneResult));
    }
    Ok(Program { code })
}

/// What a program reads: channel values of the current sample and interval functions.
pub trait Env {
    /// The current value of channel `ch` (`None`: no value, or no such channel).
    fn value(&self, ch: u8) -> Option<i32>;
    /// `f` over the current logging interval of channel `ch`.
    fn interval(&self, f: Func, ch: u8) -> Option<i32>;
}

fn binary(opcode: u8, a: Option<i64>, b: Option<i64>) -> Option<i64> {
    let (a, b) = (a?, b?);
    let truth = |c: bool| Some(i64::from(c));
    match opcode {
        op::ADD => a.checked_add(b),
        op::SUB => a.checked_sub(b),
        op::MUL => a.checked_mul(b),
        op::DIV => a.checked_div(b),
        op::MIN => Some(a.min(b)),
        op::MAX => Some(a.max(b)),
        op::EQ => truth(a == b),
        op::NE => truth(a != b),
        op::LT => truth(a < b),
        op::LE => truth(a <= b),
        op::GT => truth(a > b),
        op::GE => truth(a >= b),
        op::AND => truth(a != 0 && b != 0),
        op::OR => truth(a != 0 || b != 0),
        _ => None,
    }
}

/// Runs `code` and returns its value. Never panics, never loops, never reads out of bounds, for
/// any byte string: a program that [`verify`] would refuse gives `None`.
pub fn eval(code: &[u8], env: &impl Env) -> Option<i32> {
    if code.is_empty() || code.len() > MAX_PROGRAM {
        return None;
    }
    let mut stack = [None::<i64>; MAX_STACK];
    let mut sp = 0usize;
    let mut at = 0;
    while at < code.len() {
        let (op, next) = decode(code, at).ok()?;
        let (take, _) = op.arity();
        if sp < take {
            return None;
        }
        let v = match op {
            Op::Const(c) => Some(i64::from(c)),
            Op::Chan(c) => env.value(c).map(i64::from),
            Op::NoValue => None,
            Op::Interval(f, c) => env.interval(f, c).map(i64::from),
            Op::Unary(o) => {
                let a = stack[sp - 1];
                sp -= 1;
                match o {
                    op::ABS => a.and_then(i64::checked_abs),
                    op::NEG => a.and_then(i64::checked_neg),
                    _ => a.map(|a| i64::from(a == 0)),
                }
            }
            Op::Binary(o) => {
                let (a, b) = (stack[sp - 2], stack[sp - 1]);
                sp -= 2;
                binary(o, a, b)
            }
            Op::Default => {
                let (a, b) = (stack[sp - 2], stack[sp - 1]);
                sp -= 2;
                a.or(b)
            }
            Op::Select => {
                let (c, t, e) = (stack[sp - 3], stack[sp - 2], stack[sp - 1]);
                sp -= 3;
                match c {
                    Some(0) => e,
                    Some(_) => t,
                    None => None,
                }
            }
            Op::Unknown(_) => return None,
        };
        *stack.get_mut(sp)? = v;
        sp += 1;
        at = next;
    }
    if sp != 1 {
        return None;
    }
    stack[0].and_then(|v| i32::try_from(v).ok())
}

/// Division truncated toward zero with "no value" for a zero divisor, as [`op::DIV`].
fn div_trunc(a: i64, b: i64) -> Option<i64> {
    a.checked_div(b)
}

/// The samples of one channel over the current logging interval, and the last sample of the
/// previous one: what the interval functions ([`Func`]) are computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    count: u32,
    sum: i64,
    min: i32,
    max: i32,
    last: Option<i32>,
    previous: Option<i32>,
}

impl Default for Interval {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl Interval {
    /// No samples, no previous interval.
    pub const EMPTY: Interval = Interval {
        count: 0,
        sum: 0,
        min: i32::MAX,
        max: i32::MIN,
        last: None,
        previous: None,
    };

    /// Adds a sample; "no value" samples are not counted.
    pub fn sample(&mut self, v: Option<i32>) {
        let Some(v) = v else { return };
        self.count = self.count.saturating_add(1);
        self.sum = self.sum.saturating_add(i64::from(v));
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.last = Some(v);
    }

    /// Ends the interval (after the record was logged): the last sample, if there was one,
    /// becomes the reference of the next delta, and the statistics start again.
    pub fn close(&mut self) {
        *self = Interval {
            previous: self.last.or(self.previous),
            ..Self::EMPTY
        };
    }

    /// `f` over the samples so far. `interval_s` is the logging interval (for [`Func::Rate`]).
    /// No samples, no previous sample for a delta, a counter that went backwards, or a zero
    /// interval give `None`.
    pub fn get(&self, f: Func, interval_s: u32) -> Option<i32> {
        let delta = || {
            let d = i64::from(self.last?) - i64::from(self.previous?);
            (d >= 0).then_some(d)
        };
        let v = match f {
            Func::Delta => delta()?,
            Func::Rate => div_trunc(delta()?.checked_mul(3600)?, i64::from(interval_s))?,
            Func::Mean => div_trunc(self.sum, i64::from(self.count))?,
            Func::Min | Func::Max if self.count == 0 => return None,
            Func::Min => i64::from(self.min),
            Func::Max => i64::from(self.max),
        };
        i32::try_from(v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Vals([Option<i32>; 8]);

    impl Env for Vals {
        fn value(&self, ch: u8) -> Option<i32> {
            *self.0.get(usize::from(ch))?
        }
        fn interval(&self, f: Func, ch: u8) -> Option<i32> {
            let v = self.value(ch)?;
            Some(match f {
                Func::Delta => v - 1,
                Func::Rate => v * 2,
                Func::Mean => v,
                Func::Min => v - 10,
                Func::Max => v + 10,
            })
        }
    }

    const ENV: Vals = Vals([
        Some(100),
        Some(-7),
        None,
        Some(0),
        Some(i32::MAX),
        None,
        None,
        None,
    ]);

    fn scope(index: u8) -> Scope<impl Fn(u8) -> bool> {
        Scope {
            index,
            count: 8,
            is_computed: |c| c >= 5,
        }
    }

    fn run(code: &[u8]) -> Option<i32> {
        verify(code, &scope(6)).expect("valid");
        eval(code, &ENV)
    }

    #[test]
    fn arithmetic_and_no_value() {
        use op::*;
        assert_eq!(run(&[CHAN, 0, CHAN, 1, ADD]), Some(93));
        assert_eq!(run(&[CHAN, 0, CONST8, 3, DIV]), Some(33));
        assert_eq!(run(&[CHAN, 1, CONST8, 2, DIV]), Some(-3));
        // Division by zero and a missing input are no value, never 0.
        assert_eq!(run(&[CHAN, 0, CHAN, 3, DIV]), None);
        assert_eq!(run(&[CHAN, 2, CONST8, 1, MUL]), None);
        assert_eq!(run(&[CHAN, 2, CONST8, 0, DEFAULT]), Some(0));
        // Overflow past i32 at the end is no value.
        assert_eq!(run(&[CHAN, 4, CONST8, 1, ADD]), None);
        assert_eq!(
            run(&[CHAN, 4, CONST8, 1, ADD, CONST8, 2, SUB]),
            Some(i32::MAX - 1)
        );
        assert_eq!(run(&[CHAN, 1, ABS, CHAN, 0, MIN]), Some(7));
        assert_eq!(run(&[CHAN, 1, NEG, CONST8, 9, MAX]), Some(9));
        assert_eq!(run(&[CONST32, 0xff, 0xff, 0xff, 0xfe]), Some(-2));
        assert_eq!(run(&[NONE]), None);
    }

    #[test]
    fn comparisons_and_select() {
        use op::*;
        assert_eq!(run(&[CHAN, 0, CONST8, 50, GT]), Some(1));
        assert_eq!(run(&[CHAN, 0, CONST8, 50, LE]), Some(0));
        assert_eq!(run(&[CHAN, 3, NOT]), Some(1));
        assert_eq!(run(&[CHAN, 0, CHAN, 3, AND]), Some(0));
        assert_eq!(run(&[CHAN, 0, CHAN, 3, OR]), Some(1));
        let sel = |c: u8| [CHAN, c, CONST8, 1, CONST8, 2, SELECT];
        assert_eq!(run(&sel(0)), Some(1));
        assert_eq!(run(&sel(3)), Some(2));
        assert_eq!(run(&sel(2)), None);
        assert_eq!(run(&[CHAN, 2, CHAN, 0, EQ]), None);
    }

    #[test]
    fn interval_functions_read_the_env() {
        use op::*;
        assert_eq!(run(&[DELTA, 0]), Some(99));
        assert_eq!(run(&[RATE, 0]), Some(200));
        assert_eq!(run(&[MEAN, 1, IMIN, 1, IMAX, 1, ADD, ADD]), Some(-21));
        assert_eq!(run(&[MEAN, 2]), None);
    }

    #[test]
    fn verifier_names_what_is_wrong() {
        use op::*;
        let e = |code: &[u8]| verify(code, &scope(6)).unwrap_err();
        let k = |at, kind| ExprError { at, kind };
        assert_eq!(e(&[]), k(0, ExprErrorKind::Empty));
        assert_eq!(e(&[0xEE]), k(0, ExprErrorKind::UnknownOp(0xEE)));
        assert_eq!(e(&[CONST32, 0, 0]), k(0, ExprErrorKind::Truncated));
        assert_eq!(e(&[CONST8, 1, ADD]), k(2, ExprErrorKind::StackUnderflow));
        assert_eq!(
            e(&[CONST8, 1, CONST8, 1]),
            k(4, ExprErrorKind::NotOneResult)
        );
        assert_eq!(e(&[CHAN, 8]), k(0, ExprErrorKind::UnknownChannel(8)));
        assert_eq!(e(&[CHAN, 6]), k(0, ExprErrorKind::SelfReference(6)));
        assert_eq!(e(&[MEAN, 7]), k(0, ExprErrorKind::ForwardReference(7)));
        // A computed channel before this one and a source channel after it are fine.
        assert!(verify(&[CHAN, 5], &scope(6)).is_ok());
        assert!(verify(&[CHAN, 4], &scope(2)).is_ok());
        let deep = [CONST8, 1].repeat(MAX_STACK + 1);
        assert_eq!(
            e(&deep),
            k(2 * MAX_STACK as u8, ExprErrorKind::StackOverflow)
        );
        let long = [NONE; MAX_PROGRAM + 1];
        assert_eq!(e(&long).kind, ExprErrorKind::TooLong);
    }

    #[test]
    fn interval_statistics() {
        let mut i = Interval::EMPTY;
        assert_eq!(i.get(Func::Mean, 60), None);
        assert_eq!(i.get(Func::Min, 60), None);
        for v in [Some(1000), None, Some(1010), Some(1030)] {
            i.sample(v);
        }
        assert_eq!(i.get(Func::Mean, 60), Some(1013));
        assert_eq!(i.get(Func::Min, 60), Some(1000));
        assert_eq!(i.get(Func::Max, 60), Some(1030));
        assert_eq!(i.get(Func::Delta, 60), None, "no previous interval yet");
        i.close();
        i.sample(Some(1055));
        assert_eq!(i.get(Func::Delta, 60), Some(25));
        assert_eq!(i.get(Func::Rate, 60), Some(1500));
        assert_eq!(i.get(Func::Rate, 0), None);
        i.close();
        i.sample(Some(3)); // the counter was reset
        assert_eq!(i.get(Func::Delta, 60), None);
        i.close();
        i.close(); // an interval without samples keeps the reference
        i.sample(Some(10));
        assert_eq!(i.get(Func::Delta, 60), Some(7));
    }

    /// Programs that can only be valid: random well-formed instruction sequences.
    fn valid_program() -> impl Strategy<Value = std::vec::Vec<u8>> {
        proptest::collection::vec((0u8..6, any::<i32>(), 0u8..6), 1..20).prop_map(|parts| {
            // Build value-producing blocks combined with binary operators.
            let mut code = std::vec::Vec::new();
            for (i, (kind, c, ch)) in parts.iter().enumerate() {
                match kind {
                    0 => code.extend_from_slice(&[op::CHAN, *ch]),
                    1 => {
                        code.push(op::CONST32);
                        code.extend_from_slice(&c.to_be_bytes());
                    }
                    2 => code.extend_from_slice(&[op::MEAN, *ch]),
                    3 => code.extend_from_slice(&[op::CONST8, *c as u8]),
                    4 => code.extend_from_slice(&[op::DELTA, *ch]),
                    _ => code.push(op::NONE),
                }
                if i > 0 {
                    code.push([op::ADD, op::DIV, op::MUL, op::DEFAULT, op::LT][i % 5]);
                }
            }
            code
        })
    }

    proptest! {
        #[test]
        fn eval_never_panics(code in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = eval(&code, &ENV);
            if let Ok(p) = verify(&code, &scope(6)) {
                let _ = p.eval(&ENV);
            }
        }

        #[test]
        fn verifier_accepts_well_formed_and_rejects_cut_operands(code in valid_program()) {
            prop_assume!(code.len() <= MAX_PROGRAM);
            prop_assert!(verify(&code, &scope(6)).is_ok());
            // Cutting a valid program inside an operand is refused as truncated.
            let mut boundaries = std::vec![0];
            let mut i = 0;
            while i < code.len() {
                i = decode(&code, i).unwrap().1;
                boundaries.push(i);
            }
            for cut in 1..code.len() {
                if !boundaries.contains(&cut) {
                    prop_assert_eq!(
                        verify(&code[..cut], &scope(6)).unwrap_err().kind,
                        ExprErrorKind::Truncated
                    );
                    prop_assert_eq!(eval(&code[..cut], &ENV), None);
                }
            }
        }

        #[test]
        fn verifier_rejects_an_unknown_channel_or_opcode(
            code in valid_program(),
            at in any::<proptest::sample::Index>(),
            bad_op in 0x50u8..=0xFF,
        ) {
            prop_assume!(code.len() < MAX_PROGRAM);
            // Appending an unknown opcode is refused, naming it.
            let mut c = code.clone();
            c.push(bad_op);
            prop_assert_eq!(
                verify(&c, &scope(6)).unwrap_err().kind,
                ExprErrorKind::UnknownOp(bad_op)
            );
            // Pointing a channel operand past the map is refused.
            let chans: std::vec::Vec<usize> = {
                let mut v = std::vec::Vec::new();
                let mut i = 0;
                while let Ok((op, next)) = decode(&code, i) {
                    if matches!(op, Op::Chan(_) | Op::Interval(..)) { v.push(i + 1); }
                    i = next;
                    if i >= code.len() { break; }
                }
                v
            };
            if !chans.is_empty() {
                let mut c = code.clone();
                c[chans[at.index(chans.len())]] = 200;
                prop_assert_eq!(
                    verify(&c, &scope(6)).unwrap_err().kind,
                    ExprErrorKind::UnknownChannel(200)
                );
            }
        }

        #[test]
        fn a_verified_program_never_overflows_the_stack(code in proptest::collection::vec(
            prop_oneof![Just(op::CONST8), Just(op::ADD), Just(op::NONE), Just(op::SELECT), Just(op::ABS), Just(1u8)],
            1..MAX_PROGRAM,
        )) {
            if verify(&code, &scope(6)).is_ok() {
                // eval gives a value or no value; the verifier's stack bound held.
                let _ = eval(&code, &ENV);
            }
        }
    }
}
