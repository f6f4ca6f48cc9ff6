//! The unbiased pass@k estimator of the HumanEval paper.

/// pass@k for one problem with `n` samples of which `c` are correct:
/// 1 − C(n−c, k) / C(n, k), computed as 1 − ∏_{i=n−c+1}^{n} (1 − k/i) (stable for large n).
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if k == 0 || n == 0 {
        return 0.0;
    }
    if n.saturating_sub(c) < k {
        return 1.0;
    }
    let mut prod = 1.0f64;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - k as f64 / i as f64;
    }
    1.0 - prod
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binom(n: u64, k: u64) -> f64 {
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    }

    #[test]
    fn matches_the_closed_form() {
        for (n, c, k) in [
            (10, 3, 1),
            (10, 3, 5),
            (20, 0, 10),
            (20, 20, 1),
            (200, 37, 10),
            (5, 1, 5),
        ] {
            let exact = if n - c < k {
                1.0
            } else {
                1.0 - binom((n - c) as u64, k as u64) / binom(n as u64, k as u64)
            };
            assert!((pass_at_k(n, c, k) - exact).abs() < 1e-9, "{n} {c} {k}");
        }
        assert_eq!(pass_at_k(1, 1, 1), 1.0);
        assert_eq!(pass_at_k(1, 0, 1), 0.0);
        assert!((pass_at_k(10, 3, 1) - 0.3).abs() < 1e-12);
    }
}
