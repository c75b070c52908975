//! Comparing secrets (API tokens, proxy credentials) without leaking through timing how much matched.

/// Whether `given` equals `expected`, in time that depends only on their lengths.
pub fn equal(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn equal_only_when_identical() {
        assert!(super::equal(b"token", b"token"));
        assert!(!super::equal(b"token", b"tokem"));
        assert!(!super::equal(b"token", b"token2"));
        assert!(!super::equal(b"", b"x"));
    }
}
