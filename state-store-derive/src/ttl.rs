//! The `ttl` value of `#[state(...)]`: a duration like `"1h30m"` or a number of seconds.
//!
//! Kept apart from the attribute parsing so that it can be tested on plain strings.

/// The longest ttl, in seconds: the runtime's ceiling, from the one definition in `rules.rs`.
pub(crate) const MAX_SECS: u64 = crate::rules::MAX_TTL_SECS;

/// The units, largest first: a ttl must list them in this order, each at most once, so that
/// every duration has one spelling and `"30m1h"` is not mistaken for something intended.
const UNITS: [(&str, u64); 4] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];

const SYNTAX: &str = "write a ttl like \"90s\", \"30m\", \"1h30m\" or \"7d\"";

/// The seconds in a ttl string of `<digits><unit>` pairs (`"90s"`, `"1h30m"`, `"1d12h"`), or the
/// message to show the user.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err(format!(
            "ttl must not be empty; {SYNTAX}, or leave out `ttl` for keys that never expire"
        ));
    }
    let mut total: u64 = 0;
    // Index into UNITS of the previous pair's unit.
    let mut previous: Option<usize> = None;
    let mut rest = text;
    while !rest.is_empty() {
        let (digits, after) = rest.split_at(
            rest.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len()),
        );
        let (unit, next) = after.split_at(
            after
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(after.len()),
        );
        let index = UNITS.iter().position(|(name, _)| *name == unit);
        if digits.is_empty() {
            return Err(match index {
                Some(_) => format!("missing number before `{unit}` in ttl `{text}`; {SYNTAX}"),
                None => format!("unexpected `{unit}` in ttl `{text}`; {SYNTAX}"),
            });
        }
        if unit.is_empty() {
            return Err(format!(
                "missing unit after `{digits}` in ttl `{text}`: add `s`, `m`, `h` or `d`, \
                 or give the seconds as an integer (`ttl = {digits}`)"
            ));
        }
        let Some(index) = index else {
            return Err(format!(
                "invalid ttl unit `{unit}` in `{text}`, expected `s`, `m`, `h` or `d`"
            ));
        };
        match previous {
            Some(p) if p == index => {
                return Err(format!(
                    "unit `{unit}` appears twice in ttl `{text}`; give each unit once"
                ));
            }
            Some(p) if p > index => {
                return Err(format!(
                    "units out of order in ttl `{text}`: write the larger unit first, \
                     in the order `d`, `h`, `m`, `s` (like \"1h30m\")"
                ));
            }
            _ => {}
        }
        // `digits` is all ASCII digits, so parsing fails only on overflow.
        total = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(UNITS[index].1))
            .and_then(|secs| total.checked_add(secs))
            .filter(|&total| total <= MAX_SECS)
            .ok_or_else(|| too_long(text))?;
        previous = Some(index);
        rest = next;
    }
    if total == 0 {
        return Err(zero());
    }
    Ok(total)
}

/// The seconds in an integer literal ttl (`ttl = 90`), given the literal's digits.
pub(crate) fn parse_seconds(digits: &str) -> Result<u64, String> {
    // syn reads `-5` as one negative literal.
    if digits.starts_with('-') {
        return Err(zero());
    }
    let secs = digits
        .parse::<u64>()
        .ok()
        .filter(|&secs| secs <= MAX_SECS)
        .ok_or_else(|| too_long(digits))?;
    if secs == 0 {
        return Err(zero());
    }
    Ok(secs)
}

fn zero() -> String {
    "ttl must be greater than zero; leave out `ttl` for keys that never expire".to_owned()
}

fn too_long(text: &str) -> String {
    format!(
        "ttl `{text}` is too long: Redis takes expiries in milliseconds and rejects deadlines \
         near the end of its 64-bit clock, so a ttl may be at most {MAX_SECS} seconds"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, secs) in [
            ("90s", 90),
            ("30m", 30 * 60),
            ("12h", 12 * 3600),
            ("7d", 7 * 86_400),
            ("1h30m", 5400),
            ("1d12h", 36 * 3600),
            ("1d2h3m4s", 86_400 + 2 * 3600 + 3 * 60 + 4),
            ("0h30m", 1800),
            ("007s", 7),
            ("2305843009213693s", MAX_SECS),
            ("26687997791d", 26_687_997_791 * 86_400),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
    }

    #[test]
    fn bad_durations() {
        for (text, message) in [
            ("", "must not be empty"),
            ("0s", "greater than zero"),
            ("0d0h0m0s", "greater than zero"),
            (
                "30x",
                "invalid ttl unit `x` in `30x`, expected `s`, `m`, `h` or `d`",
            ),
            ("30min", "invalid ttl unit `min`"),
            ("30M", "invalid ttl unit `M`"),
            ("1h 30m", "invalid ttl unit `h `"),
            ("m", "missing number before `m`"),
            (" 30m", "unexpected ` `"),
            ("-5s", "unexpected `-`"),
            ("90", "missing unit after `90`"),
            ("1h30", "missing unit after `30`"),
            ("30m1h", "out of order"),
            ("1s1d", "out of order"),
            ("30m5m", "unit `m` appears twice"),
            ("2305843009213694s", "too long"),
            ("26687997792d", "too long"),
            ("9223372036854776s", "too long"),
            ("106751991167301d", "too long"),
            ("99999999999999999999999s", "too long"),
            ("106751991167300d86400s", "too long"),
        ] {
            match parse_duration(text) {
                Ok(secs) => panic!("{text:?} parsed as {secs}"),
                Err(e) => assert!(e.contains(message), "{text:?}: {e}"),
            }
        }
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("90"), Ok(90));
        assert_eq!(parse_seconds("2305843009213693"), Ok(MAX_SECS));
        for (digits, message) in [
            ("0", "greater than zero"),
            ("-5", "greater than zero"),
            ("2305843009213694", "too long"),
            ("340282366920938463463374607431768211456", "too long"),
        ] {
            let e = parse_seconds(digits).unwrap_err();
            assert!(e.contains(message), "{digits}: {e}");
        }
    }

    /// Writes `secs` the way a user would, largest unit first.
    fn spell(mut secs: u64) -> String {
        let mut out = String::new();
        for (unit, size) in UNITS {
            if secs >= size {
                out.push_str(&format!("{}{unit}", secs / size));
                secs %= size;
            }
        }
        out
    }

    /// A small deterministic generator (xorshift), so the test needs no extra dependency and
    /// fails the same way every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn arbitrary_strings_never_panic() {
        // Weighted towards characters the parser treats specially, plus multi-byte ones that
        // would panic a parser slicing at the wrong byte.
        const ALPHABET: &[&str] = &[
            "0",
            "1",
            "9",
            "5",
            "00",
            "99999999999",
            "d",
            "h",
            "m",
            "s",
            "x",
            "M",
            " ",
            "-",
            ".",
            "é",
            "🦀",
            "٣",
            "\u{0}",
            "ms",
            "min",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..100_000 {
            let len = rng.below(8);
            let text: String = (0..len)
                .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                .collect();
            if let Ok(secs) = parse_duration(&text) {
                assert!((1..=MAX_SECS).contains(&secs), "{text:?} -> {secs}");
            }
            let _ = parse_seconds(&text);
        }
    }

    #[test]
    fn canonical_spellings_round_trip() {
        let mut rng = Rng(42);
        for _ in 0..10_000 {
            // Spread over every magnitude, not just the huge values a uniform draw would give.
            let secs = (rng.next() >> rng.below(64)).clamp(1, MAX_SECS);
            assert_eq!(parse_duration(&spell(secs)), Ok(secs), "{}", spell(secs));
        }
    }
}
