//! `strata analyze --ci`: limits on efficiency and waste, and which ones an analysis crosses.

use super::analyze::Analysis;

/// CI limits; `None` = not checked.
#[derive(Debug, Default, Clone)]
pub struct Limits {
    pub lowest_efficiency: Option<f64>,
    pub highest_wasted_bytes: Option<u64>,
    pub highest_wasted_percent: Option<f64>,
}

/// The limits an analysis crosses, each as a sentence.
pub fn crossed(a: &Analysis, l: &Limits) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(x) = l.lowest_efficiency.filter(|&x| a.efficiency < x) {
        out.push(format!("efficiency {:.4} is below --lowest-efficiency {x}", a.efficiency));
    }
    if let Some(n) = l.highest_wasted_bytes.filter(|&n| a.wasted_bytes > n) {
        out.push(format!("wasted bytes {} exceed --highest-wasted-bytes {n}", a.wasted_bytes));
    }
    if let Some(p) = l.highest_wasted_percent.filter(|&p| a.wasted_percent > p) {
        out.push(format!("wasted {:.2}% exceeds --highest-wasted-percent {p}", a.wasted_percent));
    }
    out
}
