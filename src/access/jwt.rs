//! JSON Web Tokens: verified with the `jsonwebtoken` crate against the
//! keys of `[auth]`, for connection tokens (who the client is, which rooms
//! it may use) and room tokens (one more room for one user).
//!
//! The algorithms a token may use are configured, never taken from the
//! token alone: `alg: none` is not an algorithm here, and a key of one
//! family never verifies a token of another (an HS256 token "signed" with
//! an RSA public key as its secret finds no HMAC key to be checked with).
//! The keys can be read again while the server runs ([`Verifier::reload`],
//! on `SIGHUP`), for rotation; connections already verified keep going.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::grants::{Grants, Patterns};
use crate::config::AuthConfig;

/// Who a connection token says the client is, and what it may do.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// `sub`: the user, everywhere (welcome, messages, presence, members).
    pub user: String,
    /// `exp`, Unix seconds (0: the token does not expire).
    pub expires: u64,
    /// `rooms` and `publish`.
    pub grants: Grants,
    /// `info`, compact JSON, shown with the user in presence and members.
    pub info: Option<String>,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Past its `exp`.
    Expired,
    /// Anything else: bad signature, wrong algorithm, `nbf` ahead, wrong
    /// `iss`/`aud`, a claim missing or malformed. The text says which.
    Invalid(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Expired => f.write_str("token expired"),
            TokenError::Invalid(why) => write!(f, "invalid token: {why}"),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<u64>,
    rooms: Option<Vec<String>>,
    publish: Option<Vec<String>>,
    info: Option<Box<RawValue>>,
    room: Option<String>,
}

/// The keys and the rules a token is checked with.
struct Keys {
    hmac: Option<DecodingKey>,
    public: Option<DecodingKey>,
    jwks: Option<JwkSet>,
    validation: Validation,
}

/// Checks tokens; shared by every shard, its keys replaced on reload.
pub struct Verifier {
    cfg: AuthConfig,
    max_info: usize,
    keys: RwLock<Arc<Keys>>,
}

fn read(path: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("reading auth.{what} {path}: {e}"))
}

impl Verifier {
    /// The verifier `cfg` asks for (`None` in mode `none`), its keys read;
    /// settings that cannot work are an error that says which.
    pub fn new(cfg: &AuthConfig, max_info: usize) -> anyhow::Result<Option<Self>> {
        if cfg.mode == crate::config::AuthMode::None {
            return Ok(None);
        }
        let keys = Self::load(cfg)?;
        Ok(Some(Self {
            cfg: cfg.clone(),
            max_info,
            keys: RwLock::new(Arc::new(keys)),
        }))
    }

    /// Reads the keys again (rotation). On an error the old keys stay.
    pub fn reload(&self) -> anyhow::Result<()> {
        let keys = Self::load(&self.cfg)?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(())
    }

    fn load(cfg: &AuthConfig) -> anyhow::Result<Keys> {
        let mut secret = cfg.hmac_secret.as_bytes().to_vec();
        if !cfg.hmac_secret_file.is_empty() {
            anyhow::ensure!(
                secret.is_empty(),
                "auth.hmac_secret and auth.hmac_secret_file are both set: pick one"
            );
            secret = read(&cfg.hmac_secret_file, "hmac_secret_file")?;
            while secret.last().is_some_and(|b| b.is_ascii_whitespace()) {
                secret.pop();
            }
        }
        let hmac = (!secret.is_empty()).then(|| DecodingKey::from_secret(&secret));
        let mut algorithms = Vec::new();
        for name in &cfg.algorithms {
            anyhow::ensure!(
                !name.eq_ignore_ascii_case("none"),
                "auth.algorithms: \"none\" is never accepted"
            );
            algorithms.push(
                Algorithm::from_str(name)
                    .map_err(|_| anyhow::anyhow!("auth.algorithms: unknown algorithm {name:?}"))?,
            );
        }
        if algorithms.is_empty() {
            anyhow::ensure!(
                hmac.is_some(),
                "auth.algorithms must name the algorithms of the public keys (e.g. [\"ES256\"])"
            );
            algorithms.push(Algorithm::HS256);
        }
        let family = |a: &Algorithm| a.family();
        let public = if cfg.public_key_file.is_empty() {
            None
        } else {
            let pem = read(&cfg.public_key_file, "public_key_file")?;
            let asym = algorithms
                .iter()
                .find(|a| family(a) != jsonwebtoken::AlgorithmFamily::Hmac)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "auth.public_key_file needs a public-key algorithm in auth.algorithms"
                    )
                })?;
            let key = match family(asym) {
                jsonwebtoken::AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
                jsonwebtoken::AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
                _ => DecodingKey::from_ed_pem(&pem),
            };
            Some(key.map_err(|e| anyhow::anyhow!("auth.public_key_file: {e}"))?)
        };
        let jwks = if cfg.jwks_file.is_empty() {
            None
        } else {
            let text = read(&cfg.jwks_file, "jwks_file")?;
            Some(
                serde_json::from_slice::<JwkSet>(&text)
                    .map_err(|e| anyhow::anyhow!("auth.jwks_file: {e}"))?,
            )
        };
        anyhow::ensure!(
            hmac.is_some() || public.is_some() || jwks.is_some(),
            "auth.mode = \"jwt\" needs keys: auth.hmac_secret(_file), auth.public_key_file or auth.jwks_file"
        );
        for a in &algorithms {
            let have = match family(a) {
                jsonwebtoken::AlgorithmFamily::Hmac => hmac.is_some(),
                _ => public.is_some() || jwks.is_some(),
            };
            anyhow::ensure!(
                have,
                "auth.algorithms lists {a:?} but no key of its kind is configured"
            );
        }
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = cfg.leeway_s;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        let mut required: HashSet<String> = ["sub".to_string()].into();
        if cfg.require_exp {
            required.insert("exp".into());
        }
        validation.required_spec_claims = required;
        if cfg.issuer.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&[&cfg.issuer]);
        }
        if cfg.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&cfg.audience]);
        }
        Ok(Keys {
            hmac,
            public,
            jwks,
            validation,
        })
    }

    fn claims(&self, token: &str) -> Result<Claims, TokenError> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&e))?;
        let key = if header.alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            keys.hmac.clone()
        } else {
            match (&keys.jwks, &header.kid) {
                (Some(set), Some(kid)) => set
                    .find(kid)
                    .and_then(|jwk| DecodingKey::from_jwk(jwk).ok()),
                (Some(set), None) if set.keys.len() == 1 => {
                    DecodingKey::from_jwk(&set.keys[0]).ok()
                }
                _ => keys.public.clone(),
            }
        }
        .ok_or_else(|| TokenError::Invalid(format!("no key for a {:?} token", header.alg)))?;
        // The crate wants every algorithm of a validation to be of the
        // key's family: narrow the configured ones to the token's.
        let mut validation = keys.validation.clone();
        validation
            .algorithms
            .retain(|a| a.family() == header.alg.family());
        if validation.algorithms.is_empty() {
            return Err(TokenError::Invalid("algorithm not accepted".into()));
        }
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| invalid(&e))
    }

    /// Checks a connection token.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let c = self.claims(token)?;
        let user = c.sub.ok_or_else(|| TokenError::Invalid("no sub".into()))?;
        if !crate::proto::chat::valid_user_name(&user) {
            return Err(TokenError::Invalid(
                "sub is not a valid user name (1-64 printable bytes, no quotes or backslashes)"
                    .into(),
            ));
        }
        let info = match c.info {
            Some(raw) if !raw.get().starts_with('{') => {
                return Err(TokenError::Invalid("info must be a JSON object".into()))
            }
            Some(raw) => {
                let compact = crate::proto::chat::minify(raw.get()).into_owned();
                if compact.len() > self.max_info {
                    return Err(TokenError::Invalid(format!(
                        "info is over {} bytes",
                        self.max_info
                    )));
                }
                Some(compact)
            }
            None => None,
        };
        let rooms = c.rooms.unwrap_or_default();
        let publish = c.publish.unwrap_or_else(|| rooms.clone());
        Ok(Identity {
            user,
            expires: c.exp.unwrap_or(0),
            grants: Grants {
                rooms: Patterns::new(&rooms),
                publish: Patterns::new(&publish),
            },
            info,
        })
    }

    /// Checks a room token for `user` and `room`: its `exp` (0 = none).
    pub fn verify_room(&self, token: &str, user: &str, room: &str) -> Result<u64, TokenError> {
        let c = self.claims(token)?;
        if c.sub.as_deref() != Some(user) {
            return Err(TokenError::Invalid(
                "the room token is for another user".into(),
            ));
        }
        if c.room.as_deref() != Some(room) {
            return Err(TokenError::Invalid(
                "the room token is for another room".into(),
            ));
        }
        Ok(c.exp.unwrap_or(0))
    }
}

fn invalid(e: &jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::Invalid("not valid yet (nbf)".into()),
        ErrorKind::InvalidAlgorithm => TokenError::Invalid("algorithm not accepted".into()),
        ErrorKind::InvalidSignature => TokenError::Invalid("bad signature".into()),
        ErrorKind::InvalidIssuer => TokenError::Invalid("wrong issuer".into()),
        ErrorKind::InvalidAudience => TokenError::Invalid("wrong audience".into()),
        ErrorKind::MissingRequiredClaim(c) => TokenError::Invalid(format!("no {c}")),
        _ => TokenError::Invalid(e.to_string()),
    }
}
