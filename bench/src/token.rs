//! Connection tokens for servers that want a JWT (ringcast `--auth-mode jwt`).
//!
//! Tokens are made before the first connect, never on the connect path: the
//! generator must stay cheaper than the server, and signing (ES256 above
//! all) costs more than the server's verification it is meant to measure.
//! Socket `i` presents token `i mod N`. Minted tokens are one per socket,
//! with `sub` = the socket's user name (`u{i}`, the name `?user=` would give
//! it), `exp` = now + `exp_s` and `rooms` = the given patterns; a token file
//! holds N tokens, one a line, used round-robin.
//!
//! A token travels as `?token=` on the upgrade request ([`TokenVia::Query`],
//! the cheapest path: no extra frame, and the server verifies it before its
//! `welcome`), or as the first frame `{"op":"auth","token":…}`
//! ([`TokenVia::Frame`]).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

/// Where a connection presents its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenVia {
    /// `GET /ws?token=…` on the upgrade request.
    Query,
    /// `{"op":"auth","token":…}` as the first frame after the upgrade.
    Frame,
}

impl TokenVia {
    /// The name in records.
    pub fn name(self) -> &'static str {
        match self {
            TokenVia::Query => "query",
            TokenVia::Frame => "frame",
        }
    }
}

/// How tokens are signed.
#[derive(Debug, Clone)]
pub enum Signer {
    /// HMAC-SHA256 with this secret.
    Hs256(Vec<u8>),
    /// ECDSA P-256 with this PEM (PKCS#8) private key.
    Es256(Vec<u8>),
}

impl Signer {
    /// The JWT `alg`.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Signer::Hs256(_) => Algorithm::HS256,
            Signer::Es256(_) => Algorithm::ES256,
        }
    }

    fn key(&self) -> Result<EncodingKey> {
        Ok(match self {
            Signer::Hs256(secret) => EncodingKey::from_secret(secret),
            Signer::Es256(pem) => {
                EncodingKey::from_ec_pem(pem).context("ES256 key: not a P-256 PKCS#8 PEM")?
            }
        })
    }
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    rooms: &'a [String],
}

/// The tokens of a run, one per socket or reused round-robin.
#[derive(Clone)]
pub struct Tokens {
    list: Vec<String>,
    /// Where they are presented.
    pub via: TokenVia,
    /// What made them, for the record (`HS256`, `ES256`, `file`).
    pub source: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.list.len())
            .field("via", &self.via)
            .field("source", &self.source)
            .finish()
    }
}

/// The user name of socket `index`, as `?user=` names it and minted tokens' `sub`.
pub fn user_name(index: u32) -> String {
    format!("u{index}")
}

impl Tokens {
    /// Signs one token per socket `0..sockets`, valid for `exp_s` seconds,
    /// for rooms matching `rooms`.
    pub fn mint(
        signer: &Signer,
        sockets: u32,
        exp_s: u64,
        rooms: &[String],
        via: TokenVia,
    ) -> Result<Self> {
        let key = signer.key()?;
        let header = Header::new(signer.algorithm());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sign = |i: u32| {
            let sub = user_name(i);
            let claims = Claims {
                sub: &sub,
                exp: now + exp_s,
                rooms,
            };
            encode(&header, &claims, &key).context("signing a token")
        };
        // ES256 signing costs hundreds of µs: spread it over the cores.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get() as u32)
            .clamp(1, sockets.max(1));
        let chunk = sockets.div_ceil(threads).max(1);
        let parts: Vec<Result<Vec<String>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let sign = &sign;
                    let range = t * chunk..((t + 1) * chunk).min(sockets);
                    s.spawn(move || range.map(sign).collect::<Result<Vec<_>>>())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("token signer"))
                .collect()
        });
        let mut list = Vec::with_capacity(sockets as usize);
        for part in parts {
            list.extend(part?);
        }
        Ok(Tokens {
            list,
            via,
            source: format!("{:?}", signer.algorithm()),
        })
    }

    /// Reads tokens from `path`, one a line (blank lines skipped).
    pub fn from_file(path: &Path, via: TokenVia) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading tokens from {}", path.display()))?;
        let list: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if list.is_empty() {
            bail!("{} holds no token", path.display());
        }
        if let Some(bad) = list.iter().find(|t| {
            !t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        }) {
            bail!(
                "{}: a token must be base64url parts joined by dots, not {:?}",
                path.display(),
                &bad[..bad.len().min(40)]
            );
        }
        Ok(Tokens {
            list,
            via,
            source: "file".into(),
        })
    }

    /// The token socket `index` presents.
    pub fn for_socket(&self, index: u32) -> &str {
        &self.list[index as usize % self.list.len()]
    }

    /// How many distinct tokens there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Never true: [`Tokens::mint`] and [`Tokens::from_file`] give at least one.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    #[derive(serde::Deserialize)]
    struct Got {
        sub: String,
        exp: u64,
        rooms: Vec<String>,
    }

    fn keys() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/keys")
    }

    #[test]
    fn hs256_tokens_name_their_socket() {
        let rooms = vec!["*".to_string()];
        let t = Tokens::mint(
            &Signer::Hs256(b"a-secret".to_vec()),
            3,
            60,
            &rooms,
            TokenVia::Query,
        )
        .unwrap();
        assert_eq!(t.len(), 3);
        let v = Validation::new(Algorithm::HS256);
        let got = decode::<Got>(t.for_socket(4), &DecodingKey::from_secret(b"a-secret"), &v)
            .unwrap()
            .claims;
        assert_eq!((got.sub.as_str(), got.rooms), ("u1", rooms));
        assert!(got.exp > 60);
    }

    #[test]
    fn es256_tokens_verify_with_the_public_key() {
        let pem = std::fs::read(keys().join("ec.pem")).unwrap();
        let public = std::fs::read(keys().join("ec_pub.pem")).unwrap();
        let t = Tokens::mint(
            &Signer::Es256(pem),
            2,
            60,
            &["r*".to_string()],
            TokenVia::Frame,
        )
        .unwrap();
        let v = Validation::new(Algorithm::ES256);
        let got = decode::<Got>(
            t.for_socket(1),
            &DecodingKey::from_ec_pem(&public).unwrap(),
            &v,
        )
        .unwrap()
        .claims;
        assert_eq!(got.sub, "u1");
        assert_eq!(t.source, "ES256");
    }

    #[test]
    fn a_token_file_is_used_round_robin() {
        let p = std::env::temp_dir().join(format!("rcb-tokens-{}", std::process::id()));
        std::fs::write(&p, "a.b.c\n\nd.e.f\n").unwrap();
        let t = Tokens::from_file(&p, TokenVia::Query).unwrap();
        assert_eq!(
            (t.for_socket(0), t.for_socket(1), t.for_socket(2)),
            ("a.b.c", "d.e.f", "a.b.c")
        );
        std::fs::write(&p, "a b\n").unwrap();
        assert!(Tokens::from_file(&p, TokenVia::Query).is_err());
        std::fs::remove_file(&p).ok();
    }
}
