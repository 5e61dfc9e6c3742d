//! The monitor's token: compared in constant time, never logged.

/// A secret the control routes need.
#[derive(Clone)]
pub(crate) struct Token(String);

impl Token {
    pub fn new(t: String) -> Token {
        Token(t)
    }

    /// Whether `given` is the token, in time independent of where they
    /// differ (the length is not secret).
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        std::hint::black_box(diff) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_matches() {
        let t = Token::new("s3cret".into());
        assert!(t.matches("s3cret"));
        assert!(!t.matches("s3cre"));
        assert!(!t.matches("s3creT"));
        assert!(!t.matches(""));
    }
}
