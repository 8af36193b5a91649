//! Who may drive an agent: a controller that proves it holds the shared token. The token
//! never crosses the wire. Each side sends a fresh random challenge and answers the
//! other's with HMAC-SHA256(token, role || agent challenge || controller challenge), so a
//! recorded answer is worthless on the next connection (the agent's challenge differs), a
//! reflected one fails (the role differs), and the controller learns it reached an agent
//! that holds the token too.

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use anyhow::{bail, Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of a challenge.
pub const CHALLENGE_LEN: usize = 32;
/// The shortest token accepted: 128 bits of secret, however it is written.
pub const MIN_TOKEN_LEN: usize = 16;

/// The shared secret, read from a file only its owner may read.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Reads the token file: its content without surrounding white space. Refused when the
    /// file is readable by group or others (as ssh refuses such a key), or too short.
    pub fn from_file(path: &Path) -> Result<Token> {
        let meta = fs::metadata(path).with_context(|| {
            format!(
                "reading the token file {}: make one on each host with \
                 `head -c 32 /dev/urandom | base64 > {0}; chmod 600 {0}` (the same token on both)",
                path.display()
            )
        })?;
        if !meta.is_file() {
            bail!("the token file {} is not a regular file", path.display());
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "the token file {} is readable by others (mode {:o}): chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
        if meta.len() > 4096 {
            bail!(
                "the token file {} is over 4096 bytes: not a token",
                path.display()
            );
        }
        let text = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Token::new(text.trim_ascii())
    }

    pub fn new(secret: &[u8]) -> Result<Token> {
        if secret.len() < MIN_TOKEN_LEN {
            bail!(
                "the token has {} bytes; at least {MIN_TOKEN_LEN} are needed",
                secret.len()
            );
        }
        Ok(Token(secret.to_vec()))
    }

    fn mac(&self, role: Role, agent: &Challenge, controller: &Challenge) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(role.label());
        mac.update(&agent.0);
        mac.update(&controller.0);
        mac
    }

    /// This side's answer to the pair of challenges.
    pub fn prove(&self, role: Role, agent: &Challenge, controller: &Challenge) -> String {
        hex::encode(self.mac(role, agent, controller).finalize().into_bytes())
    }

    /// Checks the other side's answer, in constant time.
    pub fn check(
        &self,
        role: Role,
        agent: &Challenge,
        controller: &Challenge,
        proof: &str,
    ) -> bool {
        let Ok(bytes) = hex::decode(proof) else {
            return false;
        };
        self.mac(role, agent, controller)
            .verify_slice(&bytes)
            .is_ok()
    }
}

/// Which side a proof speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Controller,
    Agent,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Controller => b"netcopy-agent/1 controller\0",
            Role::Agent => b"netcopy-agent/1 agent\0",
        }
    }
}

/// A random challenge, fresh for each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge([u8; CHALLENGE_LEN]);

impl Challenge {
    pub fn fresh() -> Result<Challenge> {
        let mut bytes = [0u8; CHALLENGE_LEN];
        getrandom::getrandom(&mut bytes)
            .map_err(|e| anyhow::anyhow!("reading random bytes for a challenge: {e}"))?;
        Ok(Challenge(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A challenge as the peer wrote it; None unless it is exactly [`CHALLENGE_LEN`] bytes
    /// of hex.
    pub fn from_hex(text: &str) -> Option<Challenge> {
        let bytes = hex::decode(text).ok()?;
        Some(Challenge(bytes.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> Token {
        Token::new(s.as_bytes()).unwrap()
    }

    #[test]
    fn proofs_check_only_with_the_same_token_role_and_challenges() {
        let t = token("correct horse battery staple");
        let (a, c) = (Challenge::fresh().unwrap(), Challenge::fresh().unwrap());
        let proof = t.prove(Role::Controller, &a, &c);
        assert!(t.check(Role::Controller, &a, &c, &proof));
        // Another token, a reflected proof, a replay against a new challenge, garbage.
        assert!(!token("correct horse battery stapler").check(Role::Controller, &a, &c, &proof));
        assert!(!t.check(Role::Agent, &a, &c, &proof));
        let a2 = Challenge::fresh().unwrap();
        assert_ne!(a, a2);
        assert!(!t.check(Role::Controller, &a2, &c, &proof));
        assert!(!t.check(Role::Controller, &a, &c, "zz"));
        assert!(!t.check(Role::Controller, &a, &c, ""));
        assert!(!t.check(Role::Controller, &a, &c, &proof[..proof.len() - 2]));
    }

    #[test]
    fn challenges_are_exactly_32_bytes_of_hex() {
        let c = Challenge::fresh().unwrap();
        assert_eq!(Challenge::from_hex(&c.to_hex()), Some(c));
        assert_eq!(Challenge::from_hex("abcd"), None);
        assert_eq!(Challenge::from_hex(&"g".repeat(64)), None);
        assert_eq!(Challenge::from_hex(&"ab".repeat(33)), None);
    }

    #[test]
    fn token_files_must_be_private_and_long_enough() {
        let dir = std::env::temp_dir().join(format!("netcopy-token-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        fs::write(&path, "  0123456789abcdef0123\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Token::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("readable by others"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let t = Token::from_file(&path).unwrap();
        assert_eq!(t.0, b"0123456789abcdef0123");
        fs::write(&path, "short").unwrap();
        assert!(Token::from_file(&path)
            .unwrap_err()
            .to_string()
            .contains("at least 16"));
        let missing = Token::from_file(&dir.join("absent")).unwrap_err();
        assert!(format!("{missing:#}").contains("chmod 600"));
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(format!("{t:?}"), "Token(..)");
    }
}
