//! The tests, as data: each is a name, the spec section it checks, a body (a config patch plus
//! helper flags plus a check of the report, or a custom sequence of runtime calls), and the
//! known outcome per runtime (an open amber issue, a documented runc difference, a host
//! precondition).

use crate::case::{Case, Env, Kind, Leftovers};
use crate::report::Report;

mod cgroups;
mod hooks;
mod invalid;
mod lifecycle;
mod linux;
mod mounts;
mod namespaces;
mod process;

/// Fail the check with a formatted message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Fail unless `got == want`, naming `what`.
pub fn eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

pub type Patch = Box<dyn Fn(&mut Case) -> Result<(), String> + Send + Sync>;
pub type Check = Box<dyn Fn(&Report, &Case) -> Result<(), String> + Send + Sync>;
pub type Custom = Box<dyn Fn(&Env, &Leftovers) -> Result<(), String> + Send + Sync>;
pub type Precondition = Box<dyn Fn(&Env) -> Option<String> + Send + Sync>;

pub enum Body {
    /// Run the helper with `args` in a container made from the base config after `patch`;
    /// `check` its report.
    Probe {
        patch: Patch,
        args: Vec<String>,
        check: Check,
    },
    Custom(Custom),
}

/// What a runtime is known to do with a test. (A feature a runtime lacks altogether is a Todo
/// too: the test runs, fails fast, and says so the day the feature lands.)
#[derive(Clone, Debug)]
pub enum Known {
    /// Run, and a failure is expected (an open issue, or a documented runtime difference);
    /// a pass is reported so the marker can be removed.
    Todo(String),
}

pub struct Test {
    pub name: String,
    /// Where the requirement comes from (spec file and section).
    pub spec: &'static str,
    pub body: Body,
    pub known: Vec<(Kind, Known)>,
    /// A host precondition; `Some(reason)` skips the test for every runtime.
    pub requires: Option<Precondition>,
}

impl Test {
    /// A probe test: base config, `patch`, helper with no flags, `check`.
    pub fn probe(
        name: &str,
        spec: &'static str,
        patch: impl Fn(&mut Case) -> Result<(), String> + Send + Sync + 'static,
        check: impl Fn(&Report, &Case) -> Result<(), String> + Send + Sync + 'static,
    ) -> Test {
        Test {
            name: name.to_string(),
            spec,
            body: Body::Probe {
                patch: Box::new(patch),
                args: Vec::new(),
                check: Box::new(check),
            },
            known: Vec::new(),
            requires: None,
        }
    }

    pub fn custom(
        name: &str,
        spec: &'static str,
        body: impl Fn(&Env, &Leftovers) -> Result<(), String> + Send + Sync + 'static,
    ) -> Test {
        Test {
            name: name.to_string(),
            spec,
            body: Body::Custom(Box::new(body)),
            known: Vec::new(),
            requires: None,
        }
    }

    /// Helper flags for a probe test.
    pub fn args(mut self, a: &[&str]) -> Test {
        if let Body::Probe { args, .. } = &mut self.body {
            args.extend(a.iter().map(|s| s.to_string()));
        }
        self
    }

    /// amber fails this until the named issue lands: run it, tolerate a failure. (No test needs
    /// it right now; kept so that new tests for open issues can say so.)
    #[allow(dead_code)]
    pub fn amber_todo(mut self, why: &str) -> Test {
        self.known.push((Kind::Amber, Known::Todo(format!("amber: {why}"))));
        self
    }

    /// A documented runc 1.1.5 difference: run it, tolerate a failure.
    pub fn runc_todo(mut self, why: &str) -> Test {
        self.known.push((Kind::Runc, Known::Todo(format!("runc: {why}"))));
        self
    }

    pub fn requires(mut self, f: impl Fn(&Env) -> Option<String> + Send + Sync + 'static) -> Test {
        self.requires = Some(Box::new(f));
        self
    }

    pub fn known_for(&self, kind: Kind) -> Option<&Known> {
        self.known.iter().find(|(k, _)| *k == kind).map(|(_, known)| known)
    }

    /// Run the body once against `env`'s runtime.
    pub fn run(&self, env: &Env, left: &Leftovers) -> Result<(), String> {
        match &self.body {
            Body::Probe { patch, args, check } => {
                let mut case = Case::new(env, left)?;
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                case.helper_args(&args);
                patch(&mut case)?;
                let report = case.probe()?;
                check(&report, &case)
            }
            Body::Custom(f) => f(env, left),
        }
    }
}

/// Every test, in output order.
pub fn all() -> Vec<Test> {
    let mut v = Vec::new();
    v.extend(process::tests());
    v.extend(mounts::tests());
    v.extend(hooks::tests());
    v.extend(namespaces::tests());
    v.extend(linux::tests());
    v.extend(cgroups::tests());
    v.extend(lifecycle::tests());
    v.extend(invalid::tests());
    v
}
