//! The probe history of one backend: Varnish's eight shift registers and the healthy/sick verdict.
//!
//! Why a pure state machine: the verdict, the `Backend_health` line and `backend.list -p` must
//! match Varnish bit for bit, and that is only testable when the bookkeeping is apart from
//! sockets and clocks. A [`Poke`] (what one probe saw, from `probe::poke`) goes in, a
//! [`Transition`] comes out; time is passed in as `f64` seconds.
//!
//! Source: varnish-cache 7.1 `bin/varnishd/cache/cache_backend_probe.c` (`vbp_start_poke` :121,
//! `vbp_has_poked` :134, `VBP_Update_Backend` :158, `vbp_reset` :194) and
//! `include/tbl/backend_poll.h` (the bitmap order and letters).

/// Connected over IPv4 (`'4'`).
pub const GOOD_IPV4: u8 = 1 << 0;
/// Connected over IPv6 (`'6'`).
pub const GOOD_IPV6: u8 = 1 << 1;
/// Connected over a Unix socket (`'U'`).
pub const GOOD_UNIX: u8 = 1 << 2;
/// A write failed (`'x'`).
pub const ERR_XMIT: u8 = 1 << 3;
/// PROXY header (if any) and request fully written (`'X'`).
pub const GOOD_XMIT: u8 = 1 << 4;
/// Poll/read error or timeout (`'r'`).
pub const ERR_RECV: u8 = 1 << 5;
/// At least one byte received and the read loop ended without error (`'R'`).
pub const GOOD_RECV: u8 = 1 << 6;
/// The status of the first line is the expected one (`'H'`).
pub const HAPPY: u8 = 1 << 7;

/// The eight bitmaps in Varnish's order: (flag, letter, label of `backend.list -p`).
pub const BITMAPS: [(u8, char, &str); 8] = [
    (GOOD_IPV4, '4', "Good IPv4"),
    (GOOD_IPV6, '6', "Good IPv6"),
    (GOOD_UNIX, 'U', "Good UNIX"),
    (ERR_XMIT, 'x', "Error Xmit"),
    (GOOD_XMIT, 'X', "Good Xmit"),
    (ERR_RECV, 'r', "Error Recv"),
    (GOOD_RECV, 'R', "Good Recv"),
    (HAPPY, 'H', "Happy"),
];

/// Index of the `happy` register in [`Window::bits`].
const HAPPY_IX: usize = 7;

/// Varnish's `AVG_RATE`: the average of good response times weighs the newest 1/4.
const AVG_RATE: f64 = 4.0;

/// What one probe saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Poke {
    /// The flags ([`GOOD_IPV4`] ... [`HAPPY`]) this probe set.
    pub bits: u8,
    /// Response time in seconds; only meaningful with [`GOOD_RECV`] (Varnish logs 0 otherwise).
    pub last: f64,
    /// The first line of the response, or Varnish's error text (`"Open error 111 (...)"`).
    pub message: String,
}

impl Poke {
    pub fn happy(&self) -> bool {
        self.bits & HAPPY != 0
    }
}

/// The verdict after a poke, as `Backend_health` words it (Varnish 6.2+: no "Back healthy").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    WentSick,
    WentHealthy,
    StillHealthy,
    StillSick,
}

impl Transition {
    fn of(was_sick: bool, sick: bool) -> Transition {
        match (was_sick, sick) {
            (false, true) => Transition::WentSick,
            (true, false) => Transition::WentHealthy,
            (false, false) => Transition::StillHealthy,
            (true, true) => Transition::StillSick,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transition::WentSick => "Went sick",
            Transition::WentHealthy => "Went healthy",
            Transition::StillHealthy => "Still healthy",
            Transition::StillSick => "Still sick",
        }
    }

    /// Healthy after this transition.
    pub fn healthy(self) -> bool {
        matches!(self, Transition::WentHealthy | Transition::StillHealthy)
    }

    /// The verdict changed.
    pub fn changed(self) -> bool {
        matches!(self, Transition::WentSick | Transition::WentHealthy)
    }
}

/// One backend's probe history (Varnish's `struct vbp_target` minus the socket parts, plus the
/// backend's `sick` flag and `changed` time).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    window: u32,
    threshold: u32,
    initial: u32,
    /// The shift registers, in [`BITMAPS`] order; bit 0 is the newest poke.
    maps: [u64; 8],
    good: u32,
    last: f64,
    avg: f64,
    rate: f64,
    sick: bool,
    /// When the verdict last changed (seconds, as passed to [`Window::poke`]).
    changed: Option<f64>,
    /// The verdict logged at creation.
    created: Transition,
    /// Real pokes recorded since creation (the synthetic `initial` ones do not count).
    pokes: u64,
}

impl Window {
    /// A fresh history: Varnish's `vbp_reset` (all registers zero, then `initial` synthetic happy
    /// pokes, which show as `H`). `window` is capped at 64 and `initial` at `threshold`, as the
    /// VCL compiler and `vbp_set_defaults` do.
    ///
    /// The backend it belongs to was healthy before (Varnish allocates `backend.sick = 0`), so
    /// [`Window::initial_transition`] is `Went sick` when `initial < threshold` (test r02872).
    pub fn new(window: u32, threshold: u32, initial: u32) -> Window {
        let mut w = Window {
            window: window.clamp(1, 64),
            threshold,
            initial: initial.min(threshold),
            maps: [0; 8],
            good: 0,
            last: 0.0,
            avg: 0.0,
            rate: 0.0,
            sick: false,
            changed: None,
            created: Transition::StillHealthy,
            pokes: 0,
        };
        w.reset_history();
        // VBP_Update_Backend at creation, against `sick = 0`; undated (no clock here).
        w.sick = w.good < w.threshold;
        w.created = Transition::of(false, w.sick);
        w
    }

    /// `vbp_reset`: zero the history, shift in `initial` happy pokes (response time 0).
    fn reset_history(&mut self) {
        self.avg = 0.0;
        self.rate = 0.0;
        self.maps = [0; 8];
        self.last = 0.0;
        // Varnish leaves `good` stale when initial is 0 (it is only computed in
        // vbp_has_poked); the history is empty then, so 0 is the count it would print.
        self.good = 0;
        for _ in 0..self.initial {
            self.start_poke();
            self.maps[HAPPY_IX] |= 1;
            self.has_poked();
        }
    }

    /// The verdict Varnish logs when the backend is created (`VBP_Update_Backend` right after
    /// `VBP_Insert`, with `sick` starting false): `Went sick` or `Still healthy`.
    pub fn initial_transition(&self) -> Transition {
        self.created
    }

    /// Starts over with (possibly) new parameters, keeping the current verdict as the "before":
    /// what Varnish does when a VCL goes warm again (`VBP_Control`: `vbp_reset` then
    /// `VBP_Update_Backend`). Returns the transition to log; `now` dates a change.
    pub fn reconfigure(
        &mut self,
        window: u32,
        threshold: u32,
        initial: u32,
        now: f64,
    ) -> Transition {
        self.window = window.clamp(1, 64);
        self.threshold = threshold;
        self.initial = initial.min(threshold);
        self.reset_history();
        self.update(now)
    }

    /// `vbp_start_poke`: every register shifts left by one; `last` is cleared.
    fn start_poke(&mut self) {
        for m in &mut self.maps {
            *m <<= 1;
        }
        self.last = 0.0;
    }

    /// `vbp_has_poked`: the exponential average of happy response times, and `good`.
    fn has_poked(&mut self) {
        if self.maps[HAPPY_IX] & 1 != 0 {
            if self.rate < AVG_RATE {
                self.rate += 1.0;
            }
            self.avg += (self.last - self.avg) / self.rate;
        }
        self.good = (self.maps[HAPPY_IX] & mask(self.window)).count_ones();
    }

    /// `VBP_Update_Backend`: the verdict and whether it changed.
    fn update(&mut self, now: f64) -> Transition {
        let sick = self.good < self.threshold;
        let t = Transition::of(self.sick, sick);
        self.sick = sick;
        if t.changed() {
            self.changed = Some(now);
        }
        t
    }

    /// Records one probe (`vbp_task`: start_poke, poke, has_poked, update). `now` (seconds, any
    /// epoch the caller likes) dates a change of verdict.
    pub fn poke(&mut self, p: &Poke, now: f64) -> Transition {
        self.pokes += 1;
        self.start_poke();
        for (i, (flag, _, _)) in BITMAPS.iter().enumerate() {
            if p.bits & flag != 0 {
                self.maps[i] |= 1;
            }
        }
        // `last` is only set on a good receive (vbp_poke :396).
        if p.bits & GOOD_RECV != 0 {
            self.last = p.last;
        }
        self.has_poked();
        self.update(now)
    }

    /// Real pokes recorded since creation (0 until the first probe has answered or failed).
    pub fn pokes(&self) -> u64 {
        self.pokes
    }

    /// Happy pokes among the last `window`.
    pub fn good(&self) -> u32 {
        self.good
    }

    pub fn healthy(&self) -> bool {
        !self.sick
    }

    /// The registers in [`BITMAPS`] order (bit 0 = newest poke).
    pub fn bits(&self) -> [u64; 8] {
        self.maps
    }

    /// The newest poke as the 8 letters of `Backend_health` (`4---X-RH`).
    pub fn bits_str(&self) -> String {
        BITMAPS
            .iter()
            .zip(self.maps)
            .map(|((_, c, _), m)| if m & 1 != 0 { *c } else { '-' })
            .collect()
    }

    /// Average response time of happy probes (seconds).
    pub fn avg(&self) -> f64 {
        self.avg
    }

    /// Response time of the newest poke if it was a good receive, else 0.
    pub fn last(&self) -> f64 {
        self.last
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    pub fn window(&self) -> u32 {
        self.window
    }

    pub fn initial(&self) -> u32 {
        self.initial
    }

    /// When the verdict last changed (`None`: never since creation).
    pub fn last_change(&self) -> Option<f64> {
        self.changed
    }

    /// The `backend.list -p` block of this probe (`VBP_Status` :528, details, not JSON).
    pub fn status_details(&self) -> String {
        let mut s = format!(
            "\n Current states  good: {:2} threshold: {:2} window: {:2}\n",
            self.good, self.threshold, self.window
        );
        s.push_str(&format!(
            "  Average response time of good probes: {:.6}\n",
            self.avg
        ));
        s.push_str("  Oldest ================================================== Newest\n");
        for (i, (_, c, label)) in BITMAPS.iter().enumerate() {
            let m = self.maps[i];
            if m == 0 && i != HAPPY_IX {
                continue;
            }
            s.push_str("  ");
            for b in (0..64).rev() {
                s.push(if m >> b & 1 != 0 { *c } else { '-' });
            }
            s.push(' ');
            s.push_str(label);
            s.push('\n');
        }
        s
    }
}

/// The low `window` bits.
fn mask(window: u32) -> u64 {
    if window >= 64 {
        u64::MAX
    } else {
        (1u64 << window) - 1
    }
}

/// The `Backend_health` record for `w` after transition `t` (cache_backend_probe.c:182):
/// `Backend_health - <name> Went sick|... <bits> <good> <threshold> <window> <last> <avg> "<msg>"`.
pub fn backend_health_line(name: &str, t: Transition, w: &Window, message: &str) -> String {
    format!(
        "Backend_health - {name} {} {} {} {} {} {:.6} {:.6} \"{message}\"",
        t.as_str(),
        w.bits_str(),
        w.good,
        w.threshold,
        w.window,
        w.last,
        w.avg
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(last: f64) -> Poke {
        Poke {
            bits: GOOD_IPV4 | GOOD_XMIT | GOOD_RECV | HAPPY,
            last,
            message: "HTTP/1.1 200 OK".into(),
        }
    }

    fn not_found() -> Poke {
        Poke {
            bits: GOOD_IPV4 | GOOD_XMIT | GOOD_RECV,
            last: 0.002,
            message: "HTTP/1.1 404 Not Found".into(),
        }
    }

    fn timed_out() -> Poke {
        Poke {
            bits: GOOD_IPV4 | GOOD_XMIT | ERR_RECV,
            last: 0.0,
            message: "Poll error 110 (Connection timed out)".into(),
        }
    }

    fn refused() -> Poke {
        Poke {
            bits: 0,
            last: 0.0,
            message: "Open error 111 (Connection refused)".into(),
        }
    }

    #[test]
    fn starts_sick_with_default_initial_and_logs_went_sick() {
        // window 8, threshold 3, initial 2 (Varnish's defaults).
        let w = Window::new(8, 3, 2);
        assert_eq!(w.good(), 2);
        assert!(!w.healthy());
        assert_eq!(w.initial_transition(), Transition::WentSick);
        assert_eq!(w.bits_str(), "-------H");
        assert_eq!(w.bits()[7], 0b11);
        assert_eq!(
            backend_health_line("s1", w.initial_transition(), &w, ""),
            "Backend_health - s1 Went sick -------H 2 3 8 0.000000 0.000000 \"\""
        );
    }

    #[test]
    fn starts_healthy_when_initial_reaches_threshold() {
        let w = Window::new(8, 3, 3);
        assert!(w.healthy());
        assert_eq!(w.initial_transition(), Transition::StillHealthy);
        // initial is capped at the threshold.
        let w = Window::new(8, 3, 7);
        assert_eq!((w.initial(), w.good()), (3, 3));
        // initial 0: nothing shifted in, no letters.
        let w = Window::new(8, 3, 0);
        assert_eq!((w.good(), w.bits_str().as_str()), (0, "--------"));
        assert_eq!(w.bits(), [0; 8]);
    }

    #[test]
    fn first_good_probe_makes_it_healthy() {
        let mut w = Window::new(8, 3, 2);
        let t = w.poke(&ok(0.001), 10.0);
        assert_eq!(t, Transition::WentHealthy);
        assert_eq!(w.good(), 3);
        assert_eq!(w.last_change(), Some(10.0));
        assert_eq!(w.bits_str(), "4---X-RH");
        assert_eq!(
            backend_health_line("s1", t, &w, "HTTP/1.1 200 OK"),
            "Backend_health - s1 Went healthy 4---X-RH 3 3 8 0.001000 0.000333 \"HTTP/1.1 200 OK\""
        );
        assert_eq!(w.poke(&ok(0.001), 11.0), Transition::StillHealthy);
        assert_eq!(w.last_change(), Some(10.0));
    }

    #[test]
    fn averages_like_varnish() {
        // Synthetic initial pokes count in the rate (response time 0): after 2 of them the rate
        // is 2, the third happy poke makes it 3: avg = 0 + (0.003 - 0) / 3.
        let mut w = Window::new(8, 3, 2);
        w.poke(&ok(0.003), 0.0);
        assert!((w.avg() - 0.001).abs() < 1e-12);
        // rate 4 from now on.
        w.poke(&ok(0.005), 0.0);
        assert!((w.avg() - (0.001 + (0.005 - 0.001) / 4.0)).abs() < 1e-12);
        let before = w.avg();
        w.poke(&ok(0.009), 0.0);
        assert!((w.avg() - (before + (0.009 - before) / 4.0)).abs() < 1e-12);
        // Unhappy pokes leave the average alone; `last` is 0 unless the receive was good.
        let before = w.avg();
        w.poke(&timed_out(), 0.0);
        assert_eq!((w.avg(), w.last()), (before, 0.0));
        w.poke(&not_found(), 0.0);
        assert_eq!((w.avg(), w.last()), (before, 0.002));
        // No synthetic pokes: the first happy probe is the average.
        let mut w = Window::new(8, 3, 0);
        w.poke(&ok(0.004), 0.0);
        assert!((w.avg() - 0.004).abs() < 1e-12);
    }

    #[test]
    fn sequence_of_failures_goes_sick_and_back() {
        let mut w = Window::new(8, 3, 3);
        let seq: Vec<(Poke, u32, Transition, &str)> = vec![
            (ok(0.001), 4, Transition::StillHealthy, "4---X-RH"),
            (not_found(), 4, Transition::StillHealthy, "4---X-R-"),
            (timed_out(), 4, Transition::StillHealthy, "4---Xr--"),
            (refused(), 4, Transition::StillHealthy, "--------"),
            (refused(), 4, Transition::StillHealthy, "--------"),
            // The 3 initial H leave the window of 8, one per poke.
            (refused(), 3, Transition::StillHealthy, "--------"),
            (refused(), 2, Transition::WentSick, "--------"),
            (refused(), 1, Transition::StillSick, "--------"),
            (ok(0.001), 1, Transition::StillSick, "4---X-RH"),
            (ok(0.001), 2, Transition::StillSick, "4---X-RH"),
            (ok(0.001), 3, Transition::WentHealthy, "4---X-RH"),
        ];
        for (i, (p, good, t, bits)) in seq.iter().enumerate() {
            let got = w.poke(p, i as f64);
            assert_eq!(
                (got, w.good(), w.bits_str().as_str()),
                (*t, *good, *bits),
                "poke {i}"
            );
        }
        // Happy register, oldest first: 3 initial and the first ok, 7 misses, 3 ok.
        assert_eq!(w.bits()[7], 0b11_1100_0000_0111);
    }

    #[test]
    fn garbage_and_404_are_not_happy() {
        let mut w = Window::new(4, 2, 1);
        let garbage = Poke {
            bits: GOOD_IPV4 | GOOD_XMIT | GOOD_RECV,
            last: 0.001,
            message: "FROBOZ 200".into(),
        };
        assert_eq!(w.initial_transition(), Transition::WentSick);
        assert_eq!(w.poke(&garbage, 0.0), Transition::StillSick);
        assert_eq!(w.poke(&not_found(), 0.0), Transition::StillSick);
        assert_eq!(w.good(), 1);
        assert_eq!(w.bits_str(), "4---X-R-");
        assert_eq!(w.last(), 0.002);
    }

    #[test]
    fn window_64_counts_all_bits() {
        let mut w = Window::new(64, 64, 0);
        for _ in 0..63 {
            assert_eq!(w.poke(&ok(0.0), 0.0), Transition::StillSick);
        }
        assert_eq!(w.good(), 63);
        assert_eq!(w.poke(&ok(0.0), 0.0), Transition::WentHealthy);
        assert_eq!(w.good(), 64);
        assert_eq!(w.bits()[7], u64::MAX);
        // One miss: sick again (threshold == window), and the oldest bit falls off.
        assert_eq!(w.poke(&refused(), 0.0), Transition::WentSick);
        assert_eq!(w.good(), 63);
        assert_eq!(w.bits()[7], u64::MAX << 1);
        // A window over 64 is capped.
        assert_eq!(Window::new(100, 3, 2).window(), 64);
    }

    #[test]
    fn threshold_equals_window() {
        let mut w = Window::new(3, 3, 3);
        assert!(w.healthy());
        assert_eq!(w.poke(&not_found(), 1.0), Transition::WentSick);
        assert_eq!(w.poke(&ok(0.0), 2.0), Transition::StillSick);
        assert_eq!(w.poke(&ok(0.0), 3.0), Transition::StillSick);
        assert_eq!(w.poke(&ok(0.0), 4.0), Transition::WentHealthy);
        assert_eq!(w.last_change(), Some(4.0));
    }

    #[test]
    fn older_pokes_outside_the_window_do_not_count() {
        let mut w = Window::new(2, 1, 0);
        assert_eq!(w.poke(&ok(0.0), 0.0), Transition::WentHealthy);
        w.poke(&refused(), 0.0);
        assert_eq!(w.good(), 1);
        assert_eq!(w.poke(&refused(), 0.0), Transition::WentSick);
        assert_eq!(w.good(), 0);
        // The happy bit is still in the register (backend.list -p shows it), out of the window.
        assert_eq!(w.bits()[7], 0b100);
    }

    #[test]
    fn reconfigure_resets_and_reports_against_the_old_verdict() {
        let mut w = Window::new(8, 3, 2);
        w.poke(&ok(0.001), 0.0);
        assert!(w.healthy());
        // Same parameters, as on a VCL going warm again: back to initial, sick.
        assert_eq!(w.reconfigure(8, 3, 2, 5.0), Transition::WentSick);
        assert_eq!((w.good(), w.avg(), w.last_change()), (2, 0.0, Some(5.0)));
        assert_eq!(w.reconfigure(5, 2, 2, 6.0), Transition::WentHealthy);
        assert_eq!(w.reconfigure(5, 2, 2, 7.0), Transition::StillHealthy);
        assert_eq!(w.bits_str(), "-------H");
    }

    #[test]
    fn all_letters_in_order() {
        let mut w = Window::new(8, 3, 0);
        w.poke(
            &Poke {
                bits: u8::MAX,
                last: 0.5,
                message: String::new(),
            },
            0.0,
        );
        assert_eq!(w.bits_str(), "46UxXrRH");
    }

    #[test]
    fn status_details_like_backend_list_p() {
        let mut w = Window::new(8, 3, 2);
        w.poke(&ok(0.5), 0.0);
        let s = w.status_details();
        let expect = format!(
            "\n Current states  good:  3 threshold:  3 window:  8\n  Average response time of \
             good probes: 0.166667\n  Oldest {} Newest\n  {}4 Good IPv4\n  {}X Good Xmit\n  \
             {}R Good Recv\n  {}HHH Happy\n",
            "=".repeat(50),
            "-".repeat(63),
            "-".repeat(63),
            "-".repeat(63),
            "-".repeat(61),
        );
        assert_eq!(s, expect);
    }
}
