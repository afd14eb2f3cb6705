//! Times as reports show them: UTC civil date and time of seconds since the epoch, without a
//! time-zone database (Howard Hinnant's days-to-civil algorithm).

/// `YYYY-MM-DD HH:MM` (with `:SS` when `seconds`), or `-` for no time (0, negative, not finite).
pub fn format(t: f64, seconds: bool) -> String {
    if !t.is_finite() || t <= 0.0 {
        return "-".into();
    }
    let secs = t as i64;
    let days = secs.div_euclid(86400);
    let (h, m, s) = (
        secs.rem_euclid(86400) / 3600,
        secs.rem_euclid(3600) / 60,
        secs.rem_euclid(60),
    );
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    if seconds {
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02}")
    } else {
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_civil_utc_and_nonsense_is_a_dash() {
        assert_eq!(super::format(0.0, true), "-");
        assert_eq!(super::format(f64::NAN, true), "-");
        assert_eq!(super::format(951782400.5, true), "2000-02-29 00:00:00");
        assert_eq!(super::format(1796320000.0, false), "2026-12-03 17:46");
        assert!(!super::format(1e300, false).is_empty());
    }
}
