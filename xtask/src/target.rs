//! Targets beside figures. Every `cargo xtask bench …` prints each figure with its target and
//! ends with one line: `target met`, or `target missed` (a miss is a finding, reported; the
//! exit status is non-zero only when the measured path itself failed).
use std::fmt::Write as _;

/// Which side of the bound is good.
#[derive(Clone, Copy)]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

struct Line {
    name: String,
    text: String,
    met: Option<bool>,
}

/// The checks of one benchmark run.
#[derive(Default)]
pub struct Targets(Vec<Line>);

impl Targets {
    /// `figure` (in `unit`) against `bound`.
    pub fn check(&mut self, name: &str, figure: f64, unit: &str, bound: Bound) {
        let (met, want) = match bound {
            Bound::AtMost(b) => (figure <= b, format!("≤ {}", fmt(b))),
            Bound::AtLeast(b) => (figure >= b, format!("≥ {}", fmt(b))),
        };
        self.0.push(Line {
            name: name.to_owned(),
            text: format!("{} {unit} (target {want} {unit})", fmt(figure)),
            met: Some(met),
        });
    }

    /// A target this run could not measure, and why.
    pub fn unmeasured(&mut self, name: &str, target: &str, why: &str) {
        self.0.push(Line {
            name: name.to_owned(),
            text: format!("not measured: {why} (target {target})"),
            met: None,
        });
    }

    /// The lines and the final verdict, as printed.
    pub fn render(&self) -> String {
        let mut out = String::from("\ntargets:\n");
        for l in &self.0 {
            let tag = match l.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            };
            let _ = writeln!(out, "  {:<32} {:<60} {tag}", l.name, l.text);
        }
        let verdict = if self.0.iter().all(|l| l.met == Some(true)) {
            "target met"
        } else {
            "target missed"
        };
        out.push_str(verdict);
        out
    }

    pub fn print(&self) {
        println!("{}", self.render());
    }
}

/// Shortest readable form: integers without decimals, else three significant digits.
fn fmt(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_or_an_unmeasured_target_is_a_missed_run() {
        let mut t = Targets::default();
        t.check("existing flow", 42.5, "ns", Bound::AtMost(50.0));
        t.check("ratio", 9.6, "x", Bound::AtLeast(12.0));
        let r = t.render();
        assert!(r.contains("42.50 ns (target ≤ 50 ns)"), "{r}");
        assert!(r.contains("MISSED") && r.ends_with("target missed"), "{r}");
        let mut t = Targets::default();
        t.check("existing flow", 42.5, "ns", Bound::AtMost(50.0));
        assert!(t.render().ends_with("target met"));
        t.unmeasured("ratio", "≥ 12x", "--no-nfstream");
        assert!(t.render().ends_with("target missed"));
    }
}
