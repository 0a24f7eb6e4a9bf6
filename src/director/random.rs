//! `directors.random()` with weights: a random member among the healthy ones, each with a
//! chance proportional to its weight (Varnish's `vmod_random_resolve` over `vdir_pick_be`).
//!
//! Only healthy members and their weights count, so a sick member's share is spread over the
//! others in proportion to their weights. The draw is the caller's (ringcache: a generator per
//! shard, [`next_unit`]); a fixed draw gives a fixed answer, which the tests use.

/// The member for the draw `r` in [0, 1) (see [`super::pick_weighted`]).
pub fn pick<M: Copy>(
    members: &[M],
    weights: &[f64],
    r: f64,
    healthy: impl Fn(M) -> bool,
) -> Option<M> {
    super::pick_weighted(members, weights, r, healthy)
}

/// The next draw in [0, 1) from a xorshift64* generator whose state is `*state` (any value but
/// zero; zero is replaced by a constant).
pub fn next_unit(state: &mut u64) -> f64 {
    let mut x = if *state == 0 {
        0x9E37_79B9_7F4A_7C15
    } else {
        *state
    };
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    let out = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    // 53 high bits: a double in [0, 1).
    (out >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts picks of `n` draws from a seeded generator.
    fn counts(weights: &[f64], healthy: impl Fn(usize) -> bool + Copy, n: usize) -> Vec<usize> {
        let members: Vec<usize> = (0..weights.len()).collect();
        let mut state = 0x1234_5678_9ABC_DEF1;
        let mut c = vec![0; weights.len()];
        for _ in 0..n {
            let r = next_unit(&mut state);
            assert!((0.0..1.0).contains(&r));
            if let Some(m) = pick(&members, weights, r, healthy) {
                c[m] += 1;
            }
        }
        c
    }

    /// Pearson's chi-square of `got` against shares proportional to `expect`.
    fn chi2(got: &[usize], expect: &[f64]) -> f64 {
        let n: usize = got.iter().sum();
        let total: f64 = expect.iter().sum();
        got.iter()
            .zip(expect)
            .filter(|(_, e)| **e > 0.0)
            .map(|(g, e)| {
                let want = n as f64 * e / total;
                (*g as f64 - want).powi(2) / want
            })
            .sum()
    }

    #[test]
    fn weighted_distribution_over_healthy_members_only() {
        let w = [1.0, 2.0, 3.0, 4.0];
        let n = 100_000;
        let all = counts(&w, |_| true, n);
        // 3 degrees of freedom: 16.27 is the 0.1% critical value.
        assert!(chi2(&all, &w) < 16.27, "{all:?}");
        // Member 1 sick: never picked; the others keep their proportions 1:3:4.
        let c = counts(&w, |m| m != 1, n);
        assert_eq!(c[1], 0);
        assert_eq!(c.iter().sum::<usize>(), n);
        let healthy_w = [1.0, 0.0, 3.0, 4.0];
        // 2 degrees of freedom: 13.82.
        assert!(chi2(&c, &healthy_w) < 13.82, "{c:?}");
    }

    /// Varnish's r01575: weight 1 against 10000, the heavy member sick: the light one gets
    /// everything.
    #[test]
    fn sick_heavy_member_leaves_everything_to_the_light_one() {
        let c = counts(&[1.0, 10_000.0], |m| m == 0, 1000);
        assert_eq!(c, vec![1000, 0]);
    }

    #[test]
    fn all_sick_or_no_weight_is_none() {
        assert_eq!(counts(&[1.0, 1.0], |_| false, 100), vec![0, 0]);
        assert_eq!(pick(&[0, 1], &[0.0, 0.0], 0.3, |_| true), None);
    }

    #[test]
    fn generator_is_uniform_enough() {
        let mut s = 42;
        let mut buckets = [0usize; 10];
        for _ in 0..100_000 {
            buckets[(next_unit(&mut s) * 10.0) as usize] += 1;
        }
        // 9 degrees of freedom: 27.88 at 0.1%.
        assert!(chi2(&buckets, &[1.0; 10]) < 27.88, "{buckets:?}");
        let mut z = 0;
        assert!(next_unit(&mut z) < 1.0 && z != 0);
    }
}
