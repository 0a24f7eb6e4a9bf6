//! `directors.fallback(sticky)`: the first healthy member in the order they were added
//! (Varnish's `vmod_fallback_resolve`).
//!
//! Non-sticky, every pick starts from the first member, so traffic returns to it as soon as it
//! is healthy again. Sticky, the pick starts from the member chosen last time and keeps it
//! while it stays healthy; when it goes sick the next healthy one (wrapping) takes over, and a
//! recovered higher-priority member does not get the traffic back (Varnish's
//! directors_b00004). The current member is the caller's state; ringcache shares it between
//! shards (one atomic per director, written only when it changes), so all shards stick to the
//! same member as Varnish's single director does.

/// The first healthy member from `*current` (from 0 when not `sticky`), wrapping; `*current`
/// becomes the picked member's index. `None` when no member is healthy (`*current` is then
/// where the search started).
pub fn pick<M: Copy>(
    members: &[M],
    sticky: bool,
    current: &mut u32,
    healthy: impl Fn(M) -> bool,
) -> Option<M> {
    let n = members.len();
    if !sticky {
        *current = 0;
    }
    if n == 0 {
        return None;
    }
    let mut cur = *current as usize % n;
    for _ in 0..n {
        let m = members[cur];
        if healthy(m) {
            *current = cur as u32;
            return Some(m);
        }
        cur = (cur + 1) % n;
    }
    *current = cur as u32;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_healthy_in_priority_order() {
        let mut cur = 0;
        let m = [1, 2, 3];
        assert_eq!(pick(&m, false, &mut cur, |_| true), Some(1));
        assert_eq!(pick(&m, false, &mut cur, |x| x != 1), Some(2));
        assert_eq!(pick(&m, false, &mut cur, |x| x == 3), Some(3));
        // Non-sticky: back to the first as soon as it is healthy.
        assert_eq!(pick(&m, false, &mut cur, |_| true), Some(1));
        assert_eq!(pick(&m, false, &mut cur, |_| false), None);
    }

    /// Varnish's directors_b00004: s1 sick -> s2; s2 sick -> s3; s1 healthy again -> still s3
    /// (sticky); s3 sick -> wraps to s1.
    #[test]
    fn sticky_sequence_of_b00004() {
        let m = [1, 2, 3];
        let mut sick = [false; 4];
        let mut cur = 0;
        let mut step = |sick: &[bool; 4]| pick(&m, true, &mut cur, |x: i32| !sick[x as usize]);
        sick[1] = true;
        assert_eq!(step(&sick), Some(2));
        sick[2] = true;
        assert_eq!(step(&sick), Some(3));
        sick[1] = false;
        assert_eq!(step(&sick), Some(3), "does not go back to s1");
        sick[3] = true;
        assert_eq!(step(&sick), Some(1), "wraps to s1");
        sick[1] = true;
        assert_eq!(step(&sick), None);
    }

    #[test]
    fn sticky_none_keeps_position() {
        let mut cur = 2;
        assert_eq!(pick(&[1, 2, 3], true, &mut cur, |_| false), None);
        assert_eq!(cur, 2);
        assert_eq!(pick::<u8>(&[], true, &mut cur, |_| true), None);
    }
}
