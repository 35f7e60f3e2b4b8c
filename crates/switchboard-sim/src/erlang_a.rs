//! Erlang A: the M/M/N+M queue (Palm 1943; Garnett, Mandelbaum and Reiman 2002) — Poisson
//! arrivals at rate λ, exponential handle times (rate μ), N agents and exponential patience
//! (rate θ): a caller still waiting when its patience runs out leaves. The yardstick for
//! scenarios with exponential patience, as Erlang C is for those without.
//!
//! Computed numerically rather than through the incomplete-gamma closed forms, each step exact
//! up to a truncation far below the simulation's standard errors:
//!
//! - the number in the system is a birth–death chain (births λ, deaths min(k, N)·μ +
//!   max(k − N, 0)·θ), whose stationary law is summed in log space (stable at any N);
//! - an arrival sees that law (PASTA); one finding j callers queued ahead moves up at rate
//!   N·μ + i·θ while i are ahead and abandons at rate θ, so it is served with probability
//!   g_j = ∏_{i=0..j} r_i / (r_i + θ), r_i = N·μ + i·θ, after a mean wait Σ 1 / (r_i + θ);
//! - the share served within the target follows that absorbing chain for `target` seconds,
//!   started from the law of what arrivals find (uniformization: one pass for all j).

use crate::erlang::Prediction;

/// Beyond this many natural-log units below the largest term, terms are dropped (e^-40 ≈
/// 4e-18 each).
const TAIL: f64 = 40.0;

/// `n` agents, `rate` arrivals per second, mean handle time `aht`, mean patience `patience`
/// and service-level target `target` (seconds; `patience` may be infinite, then `n` must
/// exceed the offered load). Figures are those the simulation reports: abandonment and
/// service level over all offered contacts, P(wait) and the mean wait over the served ones.
pub fn predict(n: u32, rate: f64, aht: f64, patience: f64, target: f64) -> Prediction {
    let (lambda, mu, theta) = (rate, 1.0 / aht, 1.0 / patience);
    let nf = f64::from(n);
    assert!(n > 0 && rate > 0.0 && aht > 0.0 && patience > 0.0, "erlang_a: positive inputs");
    assert!(theta > 0.0 || lambda < nf * mu, "erlang_a: no patience and no spare capacity");

    // Stationary law of the number in the system, in log space, up to a negligible tail.
    let mut log_q = vec![0.0f64];
    let mut max = 0.0f64;
    let mut k = 0u64;
    loop {
        k += 1;
        let kf = k as f64;
        let death = kf.min(nf) * mu + (kf - nf).max(0.0) * theta;
        let next = log_q[log_q.len() - 1] + (lambda / death).ln();
        max = max.max(next);
        log_q.push(next);
        // Past both N and the mode, terms only shrink.
        if kf > nf && next < log_q[log_q.len() - 2] && next < max - TAIL {
            break;
        }
    }
    let norm: f64 = log_q.iter().map(|l| (l - max).exp()).sum();
    let pi: Vec<f64> = log_q.iter().map(|l| (l - max).exp() / norm).collect();
    let n_us = n as usize;
    // What an arrival finds queued ahead: weights of j = 0, 1, … callers waiting.
    let ahead: &[f64] = pi.get(n_us..).unwrap_or(&[]);
    let p_delay: f64 = ahead.iter().sum();
    let queue_len: f64 = ahead.iter().enumerate().map(|(j, p)| j as f64 * p).sum();
    let abandonment = theta * queue_len / lambda;

    // Served with and without waiting, and the waits of those served.
    let r = |i: usize| nf * mu + i as f64 * theta;
    let (mut g, mut wait, mut served_after_wait, mut wait_sum) = (1.0, 0.0, 0.0, 0.0);
    for (j, p) in ahead.iter().enumerate() {
        g *= r(j) / (r(j) + theta);
        wait += 1.0 / (r(j) + theta);
        served_after_wait += p * g;
        wait_sum += p * g * wait;
    }
    let served = 1.0 - abandonment;
    Prediction {
        p_wait: served_after_wait / served,
        service_level: (1.0 - p_delay) + served_within(ahead, nf * mu, theta, target),
        mean_wait: wait_sum / served,
        occupancy: lambda * served / (nf * mu),
        abandonment,
    }
}

/// Probability mass, starting from `ahead[j]` with j callers ahead, that reaches an agent
/// within `t` seconds: the chain i → i − 1 at rate `base + i·theta` (i = 0: served),
/// abandoning at rate `theta`, by uniformization at the largest total rate.
fn served_within(ahead: &[f64], base: f64, theta: f64, t: f64) -> f64 {
    if ahead.is_empty() || t <= 0.0 {
        return 0.0;
    }
    let top = ahead.len() - 1;
    let uniform = base + top as f64 * theta + theta;
    let lt = uniform * t;
    let mut mass = ahead.to_vec();
    let (mut served, mut result, mut weight_sum) = (0.0, 0.0, 0.0);
    // ln of the Poisson(lt) weight of k jumps, built up term by term.
    let mut log_w = -lt;
    let last = lt + 12.0 * lt.sqrt() + 40.0;
    let mut k = 0u64;
    loop {
        let w = log_w.exp();
        result += w * served;
        weight_sum += w;
        if k as f64 > last || (k as f64 > lt && 1.0 - weight_sum < 1e-15) {
            break;
        }
        // One jump of the uniformized chain: each state moves up with probability r_i / Λ.
        for i in 0..mass.len() {
            let up = mass[i] * (base + i as f64 * theta) / uniform;
            let out = mass[i] * (base + i as f64 * theta + theta) / uniform;
            mass[i] -= out;
            if i == 0 {
                served += up;
            } else {
                mass[i - 1] += up;
            }
        }
        k += 1;
        log_w += lt.ln() - (k as f64).ln();
    }
    // Mass absorbed after more jumps than summed: its weight is below 1e-15.
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erlang;

    fn close(what: &str, got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() <= tol, "{what}: {got} vs {want}");
    }

    /// With patience → ∞ Erlang A is Erlang C: the reference vector of `erlang.rs`.
    #[test]
    fn infinite_patience_is_erlang_c() {
        for n in 11..=14 {
            let c = erlang::predict(n, 10.0, 180.0, 20.0);
            let a = predict(n, 10.0 / 180.0, 180.0, 1e12, 20.0);
            close("P(wait)", a.p_wait, c.p_wait, 1e-6);
            close("SL", a.service_level, c.service_level, 1e-6);
            close("ASA", a.mean_wait, c.mean_wait, 1e-3);
            close("abandonment", a.abandonment, 0.0, 1e-6);
            close("occupancy", a.occupancy, c.occupancy, 1e-9);
        }
    }

    /// Hand-checked M/M/1+M with λ = μ = θ = 1: deaths at rate k in state k, so the number in
    /// the system is Poisson(1): P(delay) = 1 − e⁻¹, abandonment = E[(K − 1)⁺] = e⁻¹; the
    /// served who waited are P(delay) − abandonment = 1 − 2/e of all, over 1 − 1/e served.
    #[test]
    fn single_agent_with_patience_equal_to_handle_time() {
        let e = std::f64::consts::E;
        // A caller leaves the queue at rate ≥ θ = 1: after 60 s nothing is left to serve.
        let a = predict(1, 1.0, 1.0, 1.0, 60.0);
        close("abandonment", a.abandonment, 1.0 / e, 1e-12);
        close("P(wait | served)", a.p_wait, (1.0 - 2.0 / e) / (1.0 - 1.0 / e), 1e-12);
        close("SL, infinite target", a.service_level, 1.0 - 1.0 / e, 1e-9);
        close("occupancy", a.occupancy, 1.0 - 1.0 / e, 1e-12);
    }

    /// θ = μ makes every caller leave at the rate of a busy agent: the number in the system
    /// is Poisson(A) (M/M/∞), checked against direct Poisson sums at N = 10, A = 10.
    #[test]
    fn patience_equal_to_handle_time_is_a_poisson_population() {
        let (n, a) = (10usize, 10.0f64);
        let mut p = vec![(-a).exp()];
        for k in 1..200 {
            p.push(p[k - 1] * a / k as f64);
        }
        let delay: f64 = p[n..].iter().sum();
        let aband: f64 = p[n..].iter().enumerate().map(|(j, q)| j as f64 * q).sum::<f64>() / a;
        let got = predict(n as u32, a / 180.0, 180.0, 180.0, 40.0 * 180.0);
        close("abandonment", got.abandonment, aband, 1e-12);
        close("P(wait | served)", got.p_wait, (delay - aband) / (1.0 - aband), 1e-12);
        close("SL, infinite target", got.service_level, 1.0 - aband, 1e-9);
    }

    /// Abandonment two ways (Little's law on the queue; one minus the served share along the
    /// tagged caller's chain) agree, and service level rises with the target to 1 − abandonment.
    #[test]
    fn figures_are_consistent() {
        for (n, load, patience) in [(9, 10.0, 120.0), (14, 10.0, 60.0), (950, 1000.0, 300.0)] {
            let rate = load / 180.0;
            // Nobody waits 20 patiences (e^-20 of them).
            let long = predict(n, rate, 180.0, patience, 20.0 * patience);
            close("SL at a long target", long.service_level, 1.0 - long.abandonment, 1e-7);
            let mut prev = 0.0;
            for t in [0.0, 5.0, 20.0, 60.0, 600.0] {
                let p = predict(n, rate, 180.0, patience, t);
                assert!(p.service_level >= prev - 1e-12, "N={n}: SL falls at t={t}");
                assert!(p.service_level <= 1.0 - p.abandonment + 1e-9);
                prev = p.service_level;
            }
            assert!((0.0..1.0).contains(&long.abandonment) && long.occupancy <= 1.0);
        }
    }
}
