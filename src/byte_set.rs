//! Sets of bytes as 256-entry tables built at compile time, for scans on a hot path: one lookup per byte.

/// A table with `true` at each byte of `members`.
pub const fn byte_set(members: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < members.len() {
        table[members[i] as usize] = true;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    #[test]
    fn holds_exactly_its_members() {
        const SET: [bool; 256] = super::byte_set(b"a/\t");
        let members: Vec<u8> = (0..=255u8).filter(|&b| SET[usize::from(b)]).collect();
        assert_eq!(members, b"\t/a");
    }
}
