//! Device and browser from a `User-Agent`, coarsely: a kind (mobile, tablet, desktop, bot), an OS family
//! and a browser family. Only these three words are kept, never the header itself (a full User-Agent
//! string is close to a fingerprint). A dozen substring checks instead of a UA database crate: the policy
//! asks for "device and browser", not versions, and the order below settles the usual overlaps
//! (Edge and Opera say "Chrome", Chrome says "Safari", iPad says "Mobile").

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// `mobile`, `tablet`, `desktop`, `bot` or `other`.
    pub kind: &'static str,
    /// `Android`, `iOS`, `Windows`, `macOS`, `ChromeOS`, `Linux` or `other`.
    pub os: &'static str,
    /// `Edge`, `Opera`, `Samsung Internet`, `Firefox`, `Chrome`, `Safari` or `other`.
    pub browser: &'static str,
}

/// Longest header looked at: real ones are a few hundred bytes; anything longer is not worth scanning.
const MAX_UA: usize = 1024;

pub fn classify(user_agent: &str) -> Device {
    let mut end = user_agent.len().min(MAX_UA);
    while !user_agent.is_char_boundary(end) {
        end -= 1;
    }
    let ua = &user_agent[..end];
    let os = os(ua);
    Device {
        kind: kind(ua, os),
        os,
        browser: browser(ua),
    }
}

fn kind(ua: &str, os: &str) -> &'static str {
    let lower = ua.to_ascii_lowercase();
    if ["bot", "crawler", "spider", "headless"]
        .iter()
        .any(|w| lower.contains(w))
    {
        "bot"
    } else if ua.contains("iPad")
        || ua.contains("Tablet")
        || (os == "Android" && !ua.contains("Mobile"))
    {
        "tablet"
    } else if ua.contains("Mobile") || ua.contains("iPhone") {
        "mobile"
    } else if matches!(os, "Windows" | "macOS" | "Linux" | "ChromeOS") {
        "desktop"
    } else {
        "other"
    }
}

fn os(ua: &str) -> &'static str {
    const RULES: [(&str, &str); 7] = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iOS"),
        ("Windows", "Windows"),
        ("CrOS", "ChromeOS"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ];
    first_match(ua, &RULES)
}

fn browser(ua: &str) -> &'static str {
    const RULES: [(&str, &str); 9] = [
        ("Edg/", "Edge"),
        ("EdgA/", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("CriOS/", "Chrome"),
        ("Safari/", "Safari"),
    ];
    first_match(ua, &RULES)
}

fn first_match(ua: &str, rules: &[(&str, &'static str)]) -> &'static str {
    rules
        .iter()
        .find(|(needle, _)| ua.contains(needle))
        .map_or("other", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(ua: &str) -> (&'static str, &'static str, &'static str) {
        let d = classify(ua);
        (d.kind, d.os, d.browser)
    }

    #[test]
    fn common_browsers() {
        assert_eq!(
            c("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"),
            ("desktop", "Windows", "Chrome")
        );
        assert_eq!(
            c("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Edg/126.0"),
            ("desktop", "Windows", "Edge")
        );
        assert_eq!(
            c("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"),
            ("desktop", "macOS", "Safari")
        );
        assert_eq!(
            c("Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"),
            ("desktop", "Linux", "Firefox")
        );
        assert_eq!(
            c("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"),
            ("mobile", "iOS", "Safari")
        );
        assert_eq!(
            c("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0 Mobile/15E148 Safari/604.1"),
            ("tablet", "iOS", "Chrome")
        );
        assert_eq!(
            c("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36"),
            ("mobile", "Android", "Chrome")
        );
        assert_eq!(
            c("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0 Safari/537.36"),
            ("tablet", "Android", "Samsung Internet")
        );
    }

    #[test]
    fn bots_and_nonsense() {
        assert_eq!(
            c("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0 Safari/537.36").0,
            "bot"
        );
        assert_eq!(c("curl/8.5.0"), ("other", "other", "other"));
        assert_eq!(c(""), ("other", "other", "other"));
        let long = "é".repeat(5000);
        assert_eq!(c(&long).2, "other", "a cut inside a character is no panic");
    }
}
