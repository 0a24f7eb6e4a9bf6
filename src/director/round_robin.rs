//! `directors.round_robin()`: the members in turn, skipping sick ones (Varnish's
//! `vmod_rr_resolve`).
//!
//! The cursor is the caller's: ringcache keeps one per director per shard, so each shard
//! cycles through the members on its own and no shared counter is written per request. Over
//! many requests every member still gets an equal share (each shard's share is exact to one
//! request); Varnish has no weights here either (#1519).

/// Starting at `*cursor`, the first healthy member; the cursor moves past every member
/// examined (Varnish: `nxt` advances for sick members too). `None` when no member is healthy,
/// and the cursor is then back where it started.
pub fn pick<M: Copy>(members: &[M], cursor: &mut u32, healthy: impl Fn(M) -> bool) -> Option<M> {
    let n = members.len();
    if n == 0 {
        return None;
    }
    let mut next = *cursor as usize % n;
    let mut found = None;
    for _ in 0..n {
        let m = members[next];
        next = (next + 1) % n;
        if healthy(m) {
            found = Some(m);
            break;
        }
    }
    *cursor = next as u32;
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        members: &[u8],
        healthy: impl Fn(u8) -> bool + Copy,
        cursor: &mut u32,
        n: usize,
    ) -> Vec<Option<u8>> {
        (0..n).map(|_| pick(members, cursor, healthy)).collect()
    }

    #[test]
    fn in_order_then_wraps() {
        let mut c = 0;
        let got = run(&[1, 2, 3, 4], |_| true, &mut c, 6);
        assert_eq!(got, [1, 2, 3, 4, 1, 2].map(Some));
    }

    #[test]
    fn skips_sick_members() {
        let mut c = 0;
        let got = run(&[1, 2, 3, 4], |m| m != 2, &mut c, 6);
        assert_eq!(got, [1, 3, 4, 1, 3, 4].map(Some));
        // The cursor passed the sick member: after 1, it points at 2's slot, which is skipped.
        let mut c = 1;
        assert_eq!(pick(&[1, 2, 3], &mut c, |m| m != 2), Some(3));
        assert_eq!(c, 0);
    }

    #[test]
    fn all_sick_is_none_and_keeps_cursor() {
        let mut c = 2;
        assert_eq!(pick(&[1, 2, 3], &mut c, |_| false), None);
        assert_eq!(c, 2);
        assert_eq!(pick::<u8>(&[], &mut c, |_| true), None);
    }

    #[test]
    fn stale_cursor_is_taken_modulo() {
        let mut c = 7;
        assert_eq!(pick(&[1, 2, 3], &mut c, |_| true), Some(2));
    }
}
