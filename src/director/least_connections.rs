//! `directors.least_connections()` (ringcache extension; Varnish #1854 / VIP 7): the healthy
//! member with the fewest connections in use.
//!
//! Why: round-robin and random spread requests, not load; a backend that answers slowly piles
//! up connections while the others idle. Counting in-use connections moves new requests to the
//! least busy member. The counts are the caller's (ringcache: the backend's connections in use
//! on all shards, the same atomic `.max_connections` limits, see `server::conn_slot`). Ties go
//! round-robin from the caller's cursor, so idle members share the traffic instead of the first
//! one taking all of it.

/// Among healthy members, the one with the smallest `in_use`; ties go to the first found
/// scanning from `*cursor` (wrapping), and the cursor moves past the pick. `None` when no
/// member is healthy.
pub fn pick<M: Copy>(
    members: &[M],
    cursor: &mut u32,
    healthy: impl Fn(M) -> bool,
    in_use: impl Fn(M) -> u32,
) -> Option<M> {
    let n = members.len();
    if n == 0 {
        return None;
    }
    let start = *cursor as usize % n;
    let mut best: Option<(usize, u32)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        let m = members[i];
        if !healthy(m) {
            continue;
        }
        let c = in_use(m);
        if best.is_none_or(|(_, b)| c < b) {
            best = Some((i, c));
            if c == 0 {
                break;
            }
        }
    }
    let (i, _) = best?;
    *cursor = ((i + 1) % n) as u32;
    Some(members[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewest_in_use_wins() {
        let mut c = 0;
        let load = [5u32, 2, 7];
        assert_eq!(
            pick(&[0, 1, 2], &mut c, |_| true, |m: usize| load[m]),
            Some(1)
        );
        // Sick members are skipped however idle.
        assert_eq!(
            pick(&[0, 1, 2], &mut c, |m| m != 1, |m: usize| load[m]),
            Some(0)
        );
    }

    #[test]
    fn ties_rotate() {
        let mut c = 0;
        let got: Vec<_> = (0..6)
            .map(|_| pick(&[10, 11, 12], &mut c, |_| true, |_| 0))
            .collect();
        assert_eq!(got, [10, 11, 12, 10, 11, 12].map(Some));
    }

    #[test]
    fn follows_the_load_as_it_changes() {
        // Simulate: each pick opens a connection that stays open.
        let mut load = [0u32; 3];
        let mut c = 0;
        for _ in 0..9 {
            let l = load;
            let m = pick(&[0, 1, 2], &mut c, |_| true, |m: usize| l[m]).unwrap_or(0);
            load[m] += 1;
        }
        assert_eq!(load, [3, 3, 3]);
    }

    #[test]
    fn all_sick_is_none() {
        let mut c = 1;
        assert_eq!(pick(&[0, 1], &mut c, |_| false, |_| 0), None);
        assert_eq!(c, 1);
        assert_eq!(pick::<u8>(&[], &mut c, |_| true, |_| 0), None);
    }
}
