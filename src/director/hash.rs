//! `directors.hash()` with weights: the member a string hashes to (Varnish's
//! `vmod_hash_backend`).
//!
//! The strings given to `.backend(STRANDS)` are hashed as Varnish's `VRT_HashStrands32` does
//! ([`super::hash32`]), scaled to [0, 1) and used as the draw of a weighted pick among the
//! healthy members ([`super::pick_weighted`]). So one key always goes to the same member while
//! health stays the same, and keys spread over members by weight. This is not consistent
//! hashing: when a member's health changes, keys of other members can move too (the shard
//! director is the consistent one). Varnish resolves it at once, in the sub that calls
//! `.backend(...)`; the result is a member, never the hash director itself.

/// The member `parts` (concatenated) hash to, among the healthy ones.
pub fn pick<M: Copy>(
    members: &[M],
    weights: &[f64],
    parts: &[&[u8]],
    healthy: impl Fn(M) -> bool,
) -> Option<M> {
    super::pick_weighted(members, weights, draw(parts), healthy)
}

/// The draw in [0, 1) of `parts`: `hash32 * 2^-32`.
pub fn draw(parts: &[&[u8]]) -> f64 {
    f64::from(super::hash32(parts)) / 4_294_967_296.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Varnish's directors_b00003: `h1` with s1 and s2 (weight 1 each) sends "/1", "/8" and
    /// "127.0.0.1" to s2, "/3", "/13", "" and an unset header to s1.
    #[test]
    fn varnish_b00003_assignments() {
        let m = ["s1", "s2"];
        let w = [1.0, 1.0];
        let all = |_: &str| true;
        for (key, want) in [
            (&b"/1"[..], "s2"),
            (b"/3", "s1"),
            (b"/13", "s1"),
            (b"/8", "s2"),
            (b"", "s1"),
            (b"127.0.0.1", "s2"),
        ] {
            assert_eq!(
                pick(&m, &w, &[key], all),
                Some(want),
                "{}",
                String::from_utf8_lossy(key)
            );
        }
        assert_eq!(pick(&m, &w, &[], all), Some("s1"), "no string at all");
        // After `remove_backend(s1)` everything goes to s2.
        assert_eq!(pick(&m[1..], &w[1..], &[b"/3"], all), Some("s2"));
    }

    #[test]
    fn same_key_same_member_and_keys_spread() {
        let m = [0usize, 1, 2, 3];
        let w = [1.0; 4];
        let mut per = [0usize; 4];
        for i in 0..4000 {
            let key = format!("/object/{i}");
            let a = pick(&m, &w, &[key.as_bytes()], |_| true);
            let b = pick(&m, &w, &[b"/object/", i.to_string().as_bytes()], |_| true);
            assert_eq!(a, b, "strands concatenate");
            per[a.unwrap_or(9)] += 1;
        }
        for c in per {
            assert!((800..1200).contains(&c), "{per:?}");
        }
        // A heavier member gets more keys.
        let mut heavy = 0;
        for i in 0..4000 {
            let key = format!("/o/{i}");
            if pick(&m, &[3.0, 1.0, 1.0, 1.0], &[key.as_bytes()], |_| true) == Some(0) {
                heavy += 1;
            }
        }
        assert!((1800..2200).contains(&heavy), "{heavy}");
    }

    #[test]
    fn sick_member_gets_no_key_and_all_sick_is_none() {
        let m = [0usize, 1, 2];
        for i in 0..300 {
            let key = format!("/k{i}");
            let got = pick(&m, &[1.0; 3], &[key.as_bytes()], |x| x != 1);
            assert!(matches!(got, Some(0) | Some(2)), "{got:?}");
        }
        assert_eq!(pick(&m, &[1.0; 3], &[b"/x"], |_| false), None);
    }
}
