//! CEL conditions: a policy's `condition.expression`, compiled and checked when the policy is
//! loaded or registered, evaluated against the snapshot every cycle under a cost budget.
//!
//! What an expression sees (see docs/POLICIES.md §3):
//! - `cycle` (int);
//! - `global`: `kpis`, `samples`, `goal_gaps`, `evidence_missed` (maps by KPI), `coverage`,
//!   `underperforming` and `overperforming` (lists of domains);
//! - `domains`: a map by name of `health`, `unhealthy_nodes`, `kpis`, `samples`,
//!   `goal_gaps`, `evidence_missed`, `drift`, `playbooks` (by name: `runs`, `success_rate`,
//!   `autonomous_runs`, `autonomous_success_rate`), `trust_exceptions`, `window_cycles`,
//!   `missed` (the goals it misses by enough to underperform);
//! - `goals`: a map by KPI of `target`, `direction`;
//! - `patterns`: a list of `kind`, `root`, `kpi`, `domains`;
//! - `correlations`: a list of `kpi`, `a`, `b`, `r`, `cycles`;
//! - `policy`: the policy's own `id`, `streak`, `verified`, `failed`, `inconclusive`, `score`.
//!
//! The checker refuses, with the line and column in the expression, a syntax error, a
//! variable or field that does not exist, an operator applied to the wrong types, and a
//! result that is not a boolean. The cost of an expression is estimated from the largest
//! collections it may meet (as Kubernetes does for CEL in admission policies): every node
//! costs 1, a comprehension (`all`, `exists`, `map`, `filter`) its body times the largest size
//! of what it iterates. One that could exceed [`COST_BUDGET`] is refused.

use crate::goal::Goal;
use crate::snapshot::{CrossDomainSnapshot, SystemicPattern};
use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::objects::{Key, Map};
use cel::{Context, Program, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// The most an expression may cost, in estimated node evaluations.
pub const COST_BUDGET: u64 = 1_000_000;
/// Collections' largest sizes, for the cost estimate.
pub const MAX_DOMAINS: u64 = 1_000;
const MAX_KEYS: u64 = 64;
const MAX_PLAYBOOKS: u64 = 256;
const MAX_PATTERNS: u64 = 100;
const MAX_CORRELATIONS: u64 = 1_000;
const MAX_NODES: u64 = 100;

/// Why an expression was refused: where (1-based, in the expression) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ExpressionError {
    pub line: u32,
    pub column: u32,
    /// Byte offset in the expression.
    pub offset: usize,
    pub message: String,
}

/// A compiled, checked expression.
pub struct Compiled {
    program: Program,
    /// Estimated worst-case cost.
    pub cost: u64,
    /// The value paths it reads (`domains.application.kpis.overall_success_rate`), by the
    /// node that reads them: recorded with each evaluation.
    bindings: Vec<(String, IdedExpr)>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("cost", &self.cost)
            .finish()
    }
}

fn cache() -> &'static Mutex<HashMap<String, Arc<Compiled>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Compiled>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// What an expression must give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Want {
    /// A condition: a bool.
    Bool,
    /// A target: a list of domain names.
    Domains,
}

/// Compiles and checks a condition (cached: policies are evaluated every cycle).
pub fn compile(source: &str) -> Result<Arc<Compiled>, ExpressionError> {
    compile_for(source, Want::Bool)
}

/// Compiles and checks a target expression: it must give a list of domain names.
pub fn compile_domains(source: &str) -> Result<Arc<Compiled>, ExpressionError> {
    compile_for(source, Want::Domains)
}

fn compile_for(source: &str, want: Want) -> Result<Arc<Compiled>, ExpressionError> {
    let key = format!("{want:?}\u{0}{source}");
    if let Some(c) = cache().lock().map_err(poisoned)?.get(&key) {
        return Ok(c.clone());
    }
    let compiled = Arc::new(compile_uncached(source, want)?);
    cache()
        .lock()
        .map_err(poisoned)?
        .insert(key, compiled.clone());
    Ok(compiled)
}

fn poisoned<T>(_: T) -> ExpressionError {
    ExpressionError {
        line: 1,
        column: 1,
        offset: 0,
        message: "expression cache unavailable".into(),
    }
}

fn position(source: &str, offset: usize) -> (u32, u32) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() as u32 + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1) as u32
        + 1;
    (line, column)
}

fn compile_uncached(source: &str, want: Want) -> Result<Compiled, ExpressionError> {
    if source.trim().is_empty() {
        return Err(ExpressionError {
            line: 1,
            column: 1,
            offset: 0,
            message: "empty expression".into(),
        });
    }
    if source.len() > 10_000 {
        return Err(ExpressionError {
            line: 1,
            column: 1,
            offset: 0,
            message: format!("expression is {} bytes; at most 10000", source.len()),
        });
    }
    let program = Program::compile(source).map_err(|errors| {
        let first = errors.errors.first();
        let (line, column) = first.map_or((1, 1), |e| {
            (e.pos.0.max(1) as u32, (e.pos.1.max(0) + 1) as u32)
        });
        let offset = source
            .split_inclusive('\n')
            .take(line as usize - 1)
            .map(str::len)
            .sum::<usize>()
            + column as usize
            - 1;
        ExpressionError {
            line,
            column,
            offset,
            message: first.map_or("syntax error".into(), |e| {
                format!("syntax error: {}", e.msg)
            }),
        }
    })?;
    let mut checker = Checker {
        source,
        info: program.source_info(),
        scopes: Vec::new(),
        bindings: Vec::new(),
    };
    let (ty, cost) = checker.check(program.expression())?;
    match want {
        Want::Bool if !matches!(ty, Ty::Bool | Ty::Dyn) => {
            return Err(checker.error(
                program.expression(),
                format!("the expression is a {}, not a bool", ty.name()),
            ));
        }
        Want::Domains
            if !matches!(&ty, Ty::Dyn | Ty::List(..))
                || matches!(&ty, Ty::List(t, _) if !matches!(**t, Ty::String | Ty::Dyn)) =>
        {
            return Err(checker.error(
                program.expression(),
                format!(
                    "a target expression gives a list of domain names, not a {}",
                    ty.name()
                ),
            ));
        }
        _ => {}
    }
    if cost > COST_BUDGET {
        return Err(checker.error(
            program.expression(),
            format!(
                "estimated cost {cost} exceeds the budget of {COST_BUDGET} (comprehensions multiply by the size of what they iterate, e.g. {MAX_DOMAINS} domains)"
            ),
        ));
    }
    let bindings = std::mem::take(&mut checker.bindings);
    Ok(Compiled {
        program,
        cost,
        bindings,
    })
}

/// The static type of an expression.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Bool,
    Int,
    Double,
    String,
    Null,
    Dyn,
    List(Box<Ty>, u64),
    Map(Box<Ty>, u64),
    Obj(Obj),
}

/// The snapshot's object shapes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Obj {
    Global,
    Domain,
    Playbook,
    Goal,
    Pattern,
    Correlation,
    Policy,
}

impl Ty {
    fn name(&self) -> String {
        match self {
            Ty::Bool => "bool".into(),
            Ty::Int => "int".into(),
            Ty::Double => "double".into(),
            Ty::String => "string".into(),
            Ty::Null => "null".into(),
            Ty::Dyn => "dyn".into(),
            Ty::List(t, _) => format!("list({})", t.name()),
            Ty::Map(t, _) => format!("map(string, {})", t.name()),
            Ty::Obj(o) => format!("{o:?}").to_lowercase(),
        }
    }

    fn numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Double | Ty::Dyn)
    }
}

fn list(t: Ty, n: u64) -> Ty {
    Ty::List(Box::new(t), n)
}
fn map(t: Ty, n: u64) -> Ty {
    Ty::Map(Box::new(t), n)
}

fn field(obj: Obj, name: &str) -> Option<Ty> {
    let kpis = || map(Ty::Double, MAX_KEYS);
    Some(match (obj, name) {
        (Obj::Global, "kpis" | "goal_gaps" | "evidence_missed") => kpis(),
        (Obj::Global, "samples") => map(Ty::Int, MAX_KEYS),
        (Obj::Global, "coverage") => Ty::Double,
        (Obj::Global, "underperforming" | "overperforming") => list(Ty::String, MAX_DOMAINS),
        (Obj::Domain, "health") => Ty::String,
        (Obj::Domain, "unhealthy_nodes") => list(Ty::String, MAX_NODES),
        (Obj::Domain, "kpis" | "goal_gaps" | "evidence_missed" | "drift") => kpis(),
        (Obj::Domain, "samples") => map(Ty::Int, MAX_KEYS),
        (Obj::Domain, "playbooks") => map(Ty::Obj(Obj::Playbook), MAX_PLAYBOOKS),
        (Obj::Domain, "trust_exceptions" | "window_cycles") => Ty::Int,
        (Obj::Domain, "missed") => list(Ty::String, MAX_KEYS),
        (Obj::Playbook, "runs" | "autonomous_runs") => Ty::Int,
        (Obj::Playbook, "success_rate") => Ty::Double,
        // null when no run was autonomous
        (Obj::Playbook, "autonomous_success_rate") => Ty::Dyn,
        (Obj::Goal, "target") => Ty::Double,
        (Obj::Goal, "direction") => Ty::String,
        (Obj::Pattern, "kind" | "root" | "kpi") => Ty::String,
        (Obj::Pattern, "domains") => list(Ty::String, MAX_DOMAINS),
        (Obj::Correlation, "kpi" | "a" | "b") => Ty::String,
        (Obj::Correlation, "r") => Ty::Double,
        (Obj::Correlation, "cycles") => Ty::Int,
        (Obj::Policy, "id") => Ty::String,
        (Obj::Policy, "streak" | "verified" | "failed" | "inconclusive") => Ty::Int,
        (Obj::Policy, "score") => Ty::Double,
        _ => return None,
    })
}

fn fields(obj: Obj) -> &'static str {
    match obj {
        Obj::Global => {
            "kpis, samples, goal_gaps, evidence_missed, coverage, underperforming, overperforming"
        }
        Obj::Domain => {
            "health, unhealthy_nodes, kpis, samples, goal_gaps, evidence_missed, drift, playbooks, trust_exceptions, window_cycles, missed"
        }
        Obj::Playbook => "runs, success_rate, autonomous_runs, autonomous_success_rate",
        Obj::Goal => "target, direction",
        Obj::Pattern => "kind, root, kpi, domains",
        Obj::Correlation => "kpi, a, b, r, cycles",
        Obj::Policy => "id, streak, verified, failed, inconclusive, score",
    }
}

/// The variables an expression may name.
pub const VARIABLES: &[&str] = &[
    "cycle",
    "global",
    "domains",
    "goals",
    "patterns",
    "correlations",
    "policy",
];

fn root(name: &str) -> Option<Ty> {
    Some(match name {
        "cycle" => Ty::Int,
        "global" => Ty::Obj(Obj::Global),
        "domains" => map(Ty::Obj(Obj::Domain), MAX_DOMAINS),
        "goals" => map(Ty::Obj(Obj::Goal), MAX_KEYS),
        "patterns" => list(Ty::Obj(Obj::Pattern), MAX_PATTERNS),
        "correlations" => list(Ty::Obj(Obj::Correlation), MAX_CORRELATIONS),
        "policy" => Ty::Obj(Obj::Policy),
        _ => return None,
    })
}

struct Checker<'a> {
    source: &'a str,
    info: &'a cel::common::ast::SourceInfo,
    /// Comprehension variables in scope, innermost last.
    scopes: Vec<(String, Ty)>,
    bindings: Vec<(String, IdedExpr)>,
}

impl Checker<'_> {
    fn error(&self, e: &IdedExpr, message: String) -> ExpressionError {
        let offset = self.info.offset_for(e.id).map_or(0, |(s, _)| s as usize);
        let (line, column) = position(self.source, offset);
        ExpressionError {
            line,
            column,
            offset,
            message,
        }
    }

    /// A path of field selections on a root variable, e.g. `domains.app.kpis.x`, if `e` is
    /// one (string-literal indexes count as selections).
    fn path(e: &IdedExpr) -> Option<String> {
        match &e.expr {
            Expr::Ident(n) => Some(n.clone()),
            Expr::Select(s) if !s.test => Some(format!("{}.{}", Self::path(&s.operand)?, s.field)),
            Expr::Call(c) if c.func_name == "_[_]" && c.args.len() == 2 => match &c.args[1].expr {
                Expr::Literal(LiteralValue::String(k)) => {
                    Some(format!("{}.{}", Self::path(&c.args[0])?, k.inner()))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Records `e` as a binding when it reads a scalar through a path from a root variable.
    fn bind(&mut self, e: &IdedExpr, ty: &Ty) {
        if !matches!(ty, Ty::Bool | Ty::Int | Ty::Double | Ty::String | Ty::Dyn) {
            return;
        }
        if let Some(p) = Self::path(e) {
            let head = p.split('.').next().unwrap_or_default();
            let from_root = self.scopes.iter().all(|(v, _)| v != head) && p.contains('.');
            if (from_root || p == "cycle") && !self.bindings.iter().any(|(q, _)| *q == p) {
                self.bindings.push((p, e.clone()));
            }
        }
    }

    fn check(&mut self, e: &IdedExpr) -> Result<(Ty, u64), ExpressionError> {
        let (ty, cost) = self.check_inner(e)?;
        self.bind(e, &ty);
        Ok((ty, cost))
    }

    fn check_inner(&mut self, e: &IdedExpr) -> Result<(Ty, u64), ExpressionError> {
        match &e.expr {
            Expr::Literal(l) => Ok((
                match l {
                    LiteralValue::Boolean(_) => Ty::Bool,
                    LiteralValue::Int(_) | LiteralValue::UInt(_) => Ty::Int,
                    LiteralValue::Double(_) => Ty::Double,
                    LiteralValue::String(_) => Ty::String,
                    LiteralValue::Null => Ty::Null,
                    LiteralValue::Bytes(_) => Ty::Dyn,
                },
                1,
            )),
            Expr::Ident(name) => {
                if let Some((_, t)) = self.scopes.iter().rev().find(|(v, _)| v == name) {
                    return Ok((t.clone(), 1));
                }
                match root(name) {
                    Some(t) => Ok((t, 1)),
                    None => Err(self.error(
                        e,
                        format!(
                            "unknown variable {name}: expressions can use {}",
                            VARIABLES.join(", ")
                        ),
                    )),
                }
            }
            Expr::Select(s) => {
                let (t, c) = self.check(&s.operand)?;
                let ft = match &t {
                    Ty::Obj(o) => field(*o, &s.field).ok_or_else(|| {
                        self.error(
                            e,
                            format!(
                                "{} has no field {}: it has {}",
                                t.name(),
                                s.field,
                                fields(*o)
                            ),
                        )
                    })?,
                    Ty::Map(v, _) => (**v).clone(),
                    Ty::Dyn => Ty::Dyn,
                    other => {
                        return Err(self.error(
                            e,
                            format!("cannot select field {} of a {}", s.field, other.name()),
                        ));
                    }
                };
                Ok((if s.test { Ty::Bool } else { ft }, c + 1))
            }
            Expr::List(l) => {
                let mut cost = 1;
                let mut elem = None;
                for x in &l.elements {
                    let (t, c) = self.check(x)?;
                    cost += c;
                    elem = Some(match elem {
                        None => t,
                        Some(prev) if prev == t => prev,
                        Some(_) => Ty::Dyn,
                    });
                }
                Ok((list(elem.unwrap_or(Ty::Dyn), l.elements.len() as u64), cost))
            }
            Expr::Map(m) => {
                let mut cost = 1;
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        cost += self.check(&me.key)?.1 + self.check(&me.value)?.1;
                    }
                }
                Ok((map(Ty::Dyn, m.entries.len() as u64), cost))
            }
            Expr::Struct(_) => Err(self.error(e, "message literals are not supported".into())),
            Expr::Unspecified => Ok((Ty::Dyn, 1)),
            Expr::Comprehension(c) => {
                let (range, rc) = self.check(&c.iter_range)?;
                let (elem, n) = match &range {
                    Ty::List(t, n) => ((**t).clone(), *n),
                    Ty::Map(_, n) => (Ty::String, *n),
                    Ty::Dyn => (Ty::Dyn, MAX_DOMAINS),
                    other => {
                        return Err(self.error(
                            &c.iter_range,
                            format!("cannot iterate over a {}", other.name()),
                        ));
                    }
                };
                let (init, ic) = self.check(&c.accu_init)?;
                self.scopes.push((c.accu_var.clone(), init));
                self.scopes.push((c.iter_var.clone(), elem));
                if let Some(v2) = &c.iter_var2 {
                    self.scopes.push((v2.clone(), Ty::Dyn));
                }
                let body = (|| {
                    let (_, cc) = self.check(&c.loop_cond)?;
                    let (_, sc) = self.check(&c.loop_step)?;
                    Ok::<u64, ExpressionError>(cc + sc)
                })();
                if c.iter_var2.is_some() {
                    self.scopes.pop();
                }
                self.scopes.pop();
                let body = body?;
                let (result, resc) = self.check(&c.result)?;
                self.scopes.pop();
                Ok((result, rc + ic + n.saturating_mul(body) + resc))
            }
            Expr::Call(call) => self.check_call(e, call),
        }
    }

    fn check_call(
        &mut self,
        e: &IdedExpr,
        call: &cel::common::ast::CallExpr,
    ) -> Result<(Ty, u64), ExpressionError> {
        let mut cost = 1;
        let target = match &call.target {
            Some(t) => {
                let (ty, c) = self.check(t)?;
                cost += c;
                Some(ty)
            }
            None => None,
        };
        let mut args = Vec::new();
        for a in &call.args {
            let (ty, c) = self.check(a)?;
            cost += c;
            args.push(ty);
        }
        let name = call.func_name.as_str();
        let mismatch = |me: &Self, what: &str| {
            Err(me.error(
                e,
                format!(
                    "{what} cannot take {}",
                    args.iter().map(Ty::name).collect::<Vec<_>>().join(" and ")
                ),
            ))
        };
        let ty = match name {
            "_&&_" | "_||_" => {
                if !args.iter().all(|t| matches!(t, Ty::Bool | Ty::Dyn)) {
                    return mismatch(self, if name == "_&&_" { "&&" } else { "||" });
                }
                Ty::Bool
            }
            "!_" => {
                if !matches!(args[0], Ty::Bool | Ty::Dyn) {
                    return mismatch(self, "!");
                }
                Ty::Bool
            }
            "_==_" | "_!=_" => Ty::Bool,
            "_<_" | "_<=_" | "_>_" | "_>=_" => {
                let ok = (args[0].numeric() && args[1].numeric())
                    || args.iter().all(|t| matches!(t, Ty::String | Ty::Dyn));
                if !ok {
                    return mismatch(self, "a comparison");
                }
                Ty::Bool
            }
            "_+_" | "_-_" | "_*_" | "_/_" | "_%_" => {
                let (a, b) = (&args[0], &args[1]);
                match (a, b) {
                    (Ty::Int, Ty::Int) => Ty::Int,
                    (Ty::Double, Ty::Double) => Ty::Double,
                    (Ty::Dyn, t) | (t, Ty::Dyn) if t.numeric() => Ty::Dyn,
                    (Ty::String, Ty::String) if name == "_+_" => Ty::String,
                    (Ty::List(t, n), Ty::List(_, m)) if name == "_+_" => list((**t).clone(), n + m),
                    (Ty::Int, Ty::Double) | (Ty::Double, Ty::Int) => {
                        return Err(self.error(
                            e,
                            "arithmetic mixes int and double: write the int as a double (1.0, not 1), or convert with double()".into(),
                        ));
                    }
                    _ => return mismatch(self, "arithmetic"),
                }
            }
            "-_" => {
                if !args[0].numeric() {
                    return mismatch(self, "negation");
                }
                args[0].clone()
            }
            "_?_:_" => {
                if !matches!(args[0], Ty::Bool | Ty::Dyn) {
                    return Err(self.error(
                        e,
                        format!("a condition must be a bool, not a {}", args[0].name()),
                    ));
                }
                if args[1] == args[2] {
                    args[1].clone()
                } else {
                    Ty::Dyn
                }
            }
            "_[_]" => match (&args[0], &args[1]) {
                (Ty::List(t, _), Ty::Int | Ty::Dyn) => (**t).clone(),
                (Ty::Map(t, _), Ty::String | Ty::Dyn) => (**t).clone(),
                (Ty::Dyn, _) => Ty::Dyn,
                (Ty::Obj(o), Ty::String) => match &call.args[1].expr {
                    Expr::Literal(LiteralValue::String(k)) => {
                        field(*o, k.inner()).ok_or_else(|| {
                            self.error(
                                e,
                                format!(
                                    "{} has no field {}: it has {}",
                                    args[0].name(),
                                    k.inner(),
                                    fields(*o)
                                ),
                            )
                        })?
                    }
                    _ => Ty::Dyn,
                },
                _ => return mismatch(self, "indexing"),
            },
            "@in" => {
                if !matches!(args[1], Ty::List(..) | Ty::Map(..) | Ty::Dyn) {
                    return mismatch(self, "in");
                }
                Ty::Bool
            }
            "size" => {
                let of = target.as_ref().or(args.first());
                if !matches!(of, Some(Ty::List(..) | Ty::Map(..) | Ty::String | Ty::Dyn)) {
                    return Err(self.error(
                        e,
                        format!(
                            "size() cannot take a {}",
                            of.map_or("nothing".into(), Ty::name)
                        ),
                    ));
                }
                Ty::Int
            }
            "contains" | "startsWith" | "endsWith" => {
                if !matches!(target, Some(Ty::String | Ty::Dyn)) {
                    return Err(self.error(
                        e,
                        format!(
                            "{name}() works on strings, not on a {}",
                            target.map_or("nothing".into(), |t| t.name())
                        ),
                    ));
                }
                Ty::Bool
            }
            "int" => Ty::Int,
            "double" => Ty::Double,
            "string" => Ty::String,
            "max" | "min" => Ty::Dyn,
            "@not_strictly_false" => Ty::Bool,
            other => {
                return Err(self.error(e, format!("unknown function {other}")));
            }
        };
        Ok((ty, cost))
    }
}

/// The snapshot as expression variables, built once per cycle for every policy.
pub struct Variables {
    vars: Vec<(&'static str, Value)>,
}

fn s(v: &str) -> Value {
    Value::String(Arc::new(v.to_string()))
}

fn doubles(m: &BTreeMap<String, f64>) -> Value {
    Value::Map(Map {
        map: Arc::new(
            m.iter()
                .map(|(k, v)| (Key::from(k.as_str()), Value::Float(*v)))
                .collect(),
        ),
    })
}

fn ints(m: &BTreeMap<String, u64>) -> Value {
    Value::Map(Map {
        map: Arc::new(
            m.iter()
                .map(|(k, v)| (Key::from(k.as_str()), Value::Int(*v as i64)))
                .collect(),
        ),
    })
}

fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Map(Map {
        map: Arc::new(fields.into_iter().map(|(k, v)| (Key::from(k), v)).collect()),
    })
}

fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> Value {
    Value::List(Arc::new(items.into_iter().map(|x| s(x)).collect()))
}

impl Variables {
    /// The variables of `snap`.
    pub fn of(snap: &CrossDomainSnapshot, goals: &[Goal]) -> Self {
        let evidence = |w: &crate::kpi::DomainWindow| -> Value {
            doubles(
                &goals
                    .iter()
                    .filter_map(|g| {
                        super::confidence::evidence_goal_missed(w, g).map(|e| (g.kpi.clone(), e))
                    })
                    .collect(),
            )
        };
        let global = object(vec![
            ("kpis", doubles(&snap.global_kpis)),
            ("samples", ints(&snap.global_samples)),
            ("goal_gaps", doubles(&snap.goal_gaps)),
            ("evidence_missed", evidence(&snap.global_window)),
            ("coverage", Value::Float(snap.coverage)),
            (
                "underperforming",
                strings(snap.analysis.underperforming.keys()),
            ),
            ("overperforming", strings(&snap.analysis.overperforming)),
        ]);
        let domains = Value::Map(Map {
            map: Arc::new(
                snap.domains
                    .iter()
                    .map(|(name, d)| {
                        let playbooks = Value::Map(Map {
                            map: Arc::new(
                                d.playbooks
                                    .iter()
                                    .map(|(p, pb)| {
                                        (
                                            Key::from(p.as_str()),
                                            object(vec![
                                                ("runs", Value::Int(pb.runs as i64)),
                                                (
                                                    "success_rate",
                                                    Value::Float(pb.success_rate.unwrap_or(0.0)),
                                                ),
                                                (
                                                    "autonomous_runs",
                                                    Value::Int(pb.autonomous_runs as i64),
                                                ),
                                                (
                                                    "autonomous_success_rate",
                                                    pb.autonomous_success_rate
                                                        .map_or(Value::Null, Value::Float),
                                                ),
                                            ]),
                                        )
                                    })
                                    .collect(),
                            ),
                        });
                        let health = serde_json::to_value(d.health)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        let missed = snap
                            .analysis
                            .underperforming
                            .get(name)
                            .cloned()
                            .unwrap_or_default();
                        (
                            Key::from(name.as_str()),
                            object(vec![
                                ("health", s(&health)),
                                ("unhealthy_nodes", strings(&d.unhealthy_nodes)),
                                ("kpis", doubles(&d.kpis)),
                                ("samples", ints(&d.samples)),
                                ("goal_gaps", doubles(&d.goal_gaps)),
                                ("evidence_missed", evidence(&d.window)),
                                ("drift", doubles(&d.drift)),
                                ("playbooks", playbooks),
                                ("trust_exceptions", Value::Int(d.trust_exceptions as i64)),
                                ("window_cycles", Value::Int(i64::from(d.window_cycles))),
                                ("missed", strings(&missed)),
                            ]),
                        )
                    })
                    .collect(),
            ),
        });
        let goals_v = Value::Map(Map {
            map: Arc::new(
                goals
                    .iter()
                    .map(|g| {
                        let dir = serde_json::to_value(g.direction)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        (
                            Key::from(g.kpi.as_str()),
                            object(vec![
                                ("target", Value::Float(g.target)),
                                ("direction", s(&dir)),
                            ]),
                        )
                    })
                    .collect(),
            ),
        });
        let patterns = Value::List(Arc::new(
            snap.patterns
                .iter()
                .map(|p| {
                    let (root, kpi) = match p {
                        SystemicPattern::DependencyCascade(c) => (c.root.clone(), String::new()),
                        SystemicPattern::MultiDomainDrift { kpi, .. } => {
                            (String::new(), kpi.clone())
                        }
                    };
                    object(vec![
                        ("kind", s(p.kind())),
                        ("root", s(&root)),
                        ("kpi", s(&kpi)),
                        ("domains", strings(p.domains())),
                    ])
                })
                .collect(),
        ));
        let correlations = Value::List(Arc::new(
            snap.correlations
                .iter()
                .map(|c| {
                    object(vec![
                        ("kpi", s(&c.kpi)),
                        ("a", s(&c.a)),
                        ("b", s(&c.b)),
                        ("r", Value::Float(c.r)),
                        ("cycles", Value::Int(c.cycles as i64)),
                    ])
                })
                .collect(),
        ));
        Variables {
            vars: vec![
                ("cycle", Value::Int(snap.cycle as i64)),
                ("global", global),
                ("domains", domains),
                ("goals", goals_v),
                ("patterns", patterns),
                ("correlations", correlations),
            ],
        }
    }

    /// A context holding every variable but `policy`.
    pub fn context(&self) -> Context<'static, 'static> {
        let mut ctx = Context::default();
        for (k, v) in &self.vars {
            ctx.add_variable_from_value(*k, v.clone());
        }
        ctx
    }
}

/// The policy's own variables.
pub fn policy_value(id: &str, streak: u32, track: &super::TrackRecord) -> Value {
    object(vec![
        ("id", s(id)),
        ("streak", Value::Int(i64::from(streak))),
        ("verified", Value::Int(track.verified as i64)),
        ("failed", Value::Int(track.failed as i64)),
        ("inconclusive", Value::Int(track.inconclusive as i64)),
        ("score", Value::Float(track.score())),
    ])
}

/// The outcome of one evaluation: whether it held, and the values it read.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub holds: bool,
    pub bindings: BTreeMap<String, f64>,
    /// Why it could not be evaluated (a missing key, a type met at run time), if so: the
    /// condition does not hold then.
    pub error: Option<String>,
}

impl Compiled {
    /// Evaluates a target expression: the domain names it lists, or why it could not.
    pub fn domains(&self, ctx: &Context<'_, '_>) -> Result<Vec<String>, String> {
        match self.program.execute(ctx) {
            Ok(Value::List(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.to_string()),
                    other => Err(format!(
                        "the target expression listed {other:?}, not a domain name"
                    )),
                })
                .collect(),
            Ok(other) => Err(format!("the target expression gave {other:?}, not a list")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Evaluates against a context (with `policy` set). The values it read are resolved
    /// when it holds: they say why the policy fired.
    pub fn evaluate(&self, ctx: &Context<'_, '_>) -> Evaluation {
        let (holds, error) = match self.program.execute(ctx) {
            Ok(Value::Bool(b)) => (b, None),
            Ok(other) => (
                false,
                Some(format!("the expression gave {other:?}, not a bool")),
            ),
            Err(e) => (false, Some(e.to_string())),
        };
        let mut bindings = BTreeMap::new();
        if holds {
            for (path, e) in &self.bindings {
                let x = match Value::resolve(e, ctx) {
                    Ok(Value::Float(f)) => Some(f),
                    Ok(Value::Int(i)) => Some(i as f64),
                    Ok(Value::UInt(u)) => Some(u as f64),
                    Ok(Value::Bool(b)) => Some(f64::from(u8::from(b))),
                    _ => None,
                };
                if let Some(x) = x.filter(|x| x.is_finite()) {
                    bindings.insert(path.clone(), x);
                }
            }
        }
        Evaluation {
            holds,
            bindings,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_with_the_position() {
        let e = compile("global.kpis.overall_success_rate < ").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.starts_with("syntax error"), "{e}");
        let e = compile("domains.application.kpis.x < 0.9 &&\n  nonsense > 1").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3), "{e}");
        assert!(e.message.contains("unknown variable nonsense"), "{e}");
        let e = compile("global.kpi.x > 0.5").unwrap_err();
        assert!(e.message.contains("global has no field kpi"), "{e}");
        assert_eq!((e.line, e.column), (1, 7), "{e}");
        let e = compile("global.coverage > 'high'").unwrap_err();
        assert!(
            e.message
                .contains("a comparison cannot take double and string"),
            "{e}"
        );
        let e = compile("global.coverage + 1 > 0.5").unwrap_err();
        assert!(e.message.contains("mixes int and double"), "{e}");
        let e = compile("global.coverage").unwrap_err();
        assert!(e.message.contains("not a bool"), "{e}");
        let e = compile("domains.x.health.size() > 1 && frobnicate(1)").unwrap_err();
        assert!(e.message.contains("unknown function frobnicate"), "{e}");
    }

    #[test]
    fn cost_multiplies_through_comprehensions() {
        let one = compile("domains.exists(d, domains[d].trust_exceptions > 3)").unwrap();
        assert!(
            one.cost > MAX_DOMAINS && one.cost < 20 * MAX_DOMAINS,
            "{}",
            one.cost
        );
        let e = compile(
            "domains.all(a, domains.all(b, domains.exists(c, domains[c].drift.x > domains[a].drift.x)))",
        )
        .unwrap_err();
        assert!(e.message.contains("exceeds the budget"), "{e}");
    }

    #[test]
    fn evaluates_and_records_what_it_read() {
        let c = compile(
            "domains.application.kpis.overall_success_rate < 0.9 && global.coverage >= 0.5 && domains.exists(d, domains[d].trust_exceptions > 2)",
        )
        .unwrap();
        let mut snap = CrossDomainSnapshot::default();
        let mut d = crate::snapshot::DomainSnapshot::default();
        d.kpis.insert("overall_success_rate".into(), 0.85);
        d.trust_exceptions = 3;
        snap.domains.insert("application".into(), d);
        snap.coverage = 1.0;
        let vars = Variables::of(&snap, &[]);
        let ctx = vars.context();
        let r = c.evaluate(&ctx);
        assert!(r.holds, "{r:?}");
        assert_eq!(
            r.bindings
                .get("domains.application.kpis.overall_success_rate"),
            Some(&0.85)
        );
        assert_eq!(r.bindings.get("global.coverage"), Some(&1.0));
        // a key that is not there: the condition does not hold, and says why
        let c = compile("domains.security.kpis.overall_success_rate < 0.9").unwrap();
        let r = c.evaluate(&ctx);
        assert!(!r.holds && r.error.is_some(), "{r:?}");
    }
}
