//! The signed model bundle and its verification.
//!
//! A [`Bundle`] travels inline in one JSON KV value: the manifest as the exact bytes that were
//! signed (a JSON string, so no canonical form is needed), the ed25519 signature over them and
//! the model file (base64). The [`Manifest`] names the fleet, a version that only grows, the
//! model's SHA-256 and size, the feature layout it takes, its parent, its metrics and golden-set
//! result, the signing key's id, when it was made and when it expires, and the learner lease
//! revision it was published under.
//!
//! A sensor's [`Verifier`] accepts a bundle only if, in this order: it parses, its key is
//! trusted, the signature verifies (`verify_strict`), it is for this fleet and this build's
//! feature layout, it has not expired, its version is above the highest accepted (kept across
//! restarts by the watcher), the file's digest matches and the model loads. Anything else is a
//! [`Refusal`] with its reason.
use std::path::Path;

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ann::features::{FEATURE_VECTOR_VERSION, N_FEATURES};
use crate::learn::models::sha256_hex;
use crate::store::{format_rfc3339, parse_rfc3339};

/// What a published model claims, signed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub fleet_id: String,
    /// Grows by one per publication (a rollback is a new version).
    pub version: u64,
    /// SHA-256 of the model file, hex.
    pub sha256: String,
    pub size: u64,
    pub feature_vector_version: u32,
    pub feature_layout_version: u32,
    pub n_features: usize,
    pub parent_version: Option<u64>,
    /// The learner's held-out metrics (`CycleMetrics`), as published.
    pub metrics: Option<serde_json::Value>,
    /// Golden-set accuracy before and after the cycle.
    pub golden: Option<GoldenResult>,
    /// The version whose content this is, for a rollback.
    pub content_of: Option<u64>,
    /// [`key_id`] of the signing key.
    pub key_id: String,
    /// RFC 3339.
    pub created: String,
    pub expires: String,
    /// Revision of the learner lease this was published under.
    pub lease_revision: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GoldenResult {
    pub before: f64,
    pub after: f64,
}

/// The KV value: signed manifest bytes, signature, model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// The manifest JSON exactly as signed.
    pub manifest: String,
    /// ed25519 signature over `manifest`'s bytes, hex.
    pub signature: String,
    /// The model file, base64 (standard).
    pub model: String,
}

/// Why a sensor refused a bundle.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed bundle: {0}")]
    Malformed(String),
    #[error("signed by unknown key {0}")]
    UnknownKey(String),
    #[error("bad signature (manifest altered or forged)")]
    BadSignature,
    #[error("for fleet {0:?}, this sensor is in {1:?}")]
    OtherFleet(String, String),
    #[error(
        "feature layout {got} (vector v{got_vector}, {got_n} features) differs from this sensor's {want} (v{want_vector}, {want_n})"
    )]
    OtherLayout {
        got: u32,
        got_vector: u32,
        got_n: usize,
        want: u32,
        want_vector: u32,
        want_n: usize,
    },
    #[error("expired at {0}")]
    Expired(String),
    #[error("version {got} is not above the highest accepted {highest}")]
    NotNewer { got: u64, highest: u64 },
    #[error("model digest {got} differs from the manifest's {want} (model altered)")]
    DigestMismatch { got: String, want: String },
    #[error("model refused: {0}")]
    ModelRefused(String),
}

impl Refusal {
    /// A short code for metrics labels and counters.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::UnknownKey(_) => "unknown_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::OtherFleet(..) => "other_fleet",
            Refusal::OtherLayout { .. } => "other_layout",
            Refusal::Expired(_) => "expired",
            Refusal::NotNewer { .. } => "not_newer",
            Refusal::DigestMismatch { .. } => "digest_mismatch",
            Refusal::ModelRefused(_) => "model_refused",
        }
    }

    pub const CODES: [&'static str; 9] = [
        "malformed",
        "unknown_key",
        "bad_signature",
        "other_fleet",
        "other_layout",
        "expired",
        "not_newer",
        "digest_mismatch",
        "model_refused",
    ];
}

/// The id of a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(k: &VerifyingKey) -> String {
    sha256_hex(k.as_bytes())[..16].to_string()
}

/// A public key written as 64 hex digits.
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, String> {
    let b = hex::decode(s.trim()).map_err(|e| format!("public key {s:?}: not hex ({e})"))?;
    let a: [u8; 32] = b
        .try_into()
        .map_err(|_| format!("public key {s:?}: expected 32 bytes (64 hex digits)"))?;
    VerifyingKey::from_bytes(&a).map_err(|e| format!("public key {s:?}: {e}"))
}

/// A fresh signing key from the kernel's random source.
pub fn generate_key() -> std::io::Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom(&mut seed)?;
    Ok(SigningKey::from_bytes(&seed))
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: writes at most buf.len() - done bytes into the slice's remaining part.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        } else {
            done += n as usize;
        }
    }
    Ok(())
}

/// Writes the secret key (hex seed) to `path`, mode 0600, refusing to overwrite.
pub fn write_signing_key(path: &Path, k: &SigningKey) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{}", hex::encode(k.to_bytes()))?;
    f.sync_all()
}

/// Reads a key written by [`write_signing_key`].
pub fn read_signing_key(path: &Path) -> Result<SigningKey, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let b = hex::decode(s.trim()).map_err(|e| format!("{}: not hex ({e})", path.display()))?;
    let a: [u8; 32] = b
        .try_into()
        .map_err(|_| format!("{}: expected a 32-byte seed", path.display()))?;
    Ok(SigningKey::from_bytes(&a))
}

impl Manifest {
    /// A manifest for `model` made now, valid for `valid_for`, with this build's layout.
    pub fn for_model(
        fleet_id: &str,
        version: u64,
        model: &[u8],
        key: &VerifyingKey,
        valid_for: time::Duration,
    ) -> Self {
        let now = OffsetDateTime::now_utc();
        Manifest {
            fleet_id: fleet_id.into(),
            version,
            sha256: sha256_hex(model),
            size: model.len() as u64,
            feature_vector_version: FEATURE_VECTOR_VERSION,
            feature_layout_version: safelink_common::FEATURE_LAYOUT_VERSION,
            n_features: N_FEATURES,
            parent_version: None,
            metrics: None,
            golden: None,
            content_of: None,
            key_id: key_id(key),
            created: format_rfc3339(now),
            expires: format_rfc3339(now + valid_for),
            lease_revision: 0,
        }
    }
}

impl Bundle {
    /// Signs `m` (its `key_id` is set to `key`'s) and packs it with `model`.
    pub fn sign(mut m: Manifest, model: &[u8], key: &SigningKey) -> Bundle {
        m.key_id = key_id(&key.verifying_key());
        let manifest = serde_json::to_string(&m).expect("manifest serialises");
        let sig = key.sign(manifest.as_bytes());
        Bundle {
            manifest,
            signature: hex::encode(sig.to_bytes()),
            model: base64::engine::general_purpose::STANDARD.encode(model),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("bundle serialises")
    }

    pub fn from_bytes(b: &[u8]) -> Result<Bundle, Refusal> {
        serde_json::from_slice(b).map_err(|e| Refusal::Malformed(e.to_string()))
    }

    /// The manifest, parsed but NOT verified (operator listings).
    pub fn unverified_manifest(&self) -> Result<Manifest, Refusal> {
        serde_json::from_str(&self.manifest).map_err(|e| Refusal::Malformed(e.to_string()))
    }

    pub fn model_bytes(&self) -> Result<Vec<u8>, Refusal> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.model)
            .map_err(|e| Refusal::Malformed(format!("model: {e}")))
    }
}

/// A bundle that passed every check.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
    pub bytes: Vec<u8>,
    pub model: crate::ann::AnnModel,
}

/// The sensor's checks (module doc).
#[derive(Clone, Debug)]
pub struct Verifier {
    fleet_id: String,
    keys: Vec<(String, VerifyingKey)>,
}

impl Verifier {
    pub fn new(fleet_id: &str, keys: &[VerifyingKey]) -> Self {
        Verifier {
            fleet_id: fleet_id.into(),
            keys: keys.iter().map(|k| (key_id(k), *k)).collect(),
        }
    }

    /// From `[fleet] trusted_keys`.
    pub fn from_config(f: &super::FleetSection) -> Result<Self, String> {
        let keys = f
            .trusted_keys
            .iter()
            .map(|k| parse_public_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(&f.fleet_id, &keys))
    }

    /// Checks `raw` against everything in the module doc; `highest` is the highest version
    /// accepted so far.
    pub fn verify(
        &self,
        raw: &[u8],
        highest: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<Verified, Refusal> {
        let b = Bundle::from_bytes(raw)?;
        let m = b.unverified_manifest()?;
        let key = self
            .keys
            .iter()
            .find(|(id, _)| *id == m.key_id)
            .map(|(_, k)| k)
            .ok_or_else(|| Refusal::UnknownKey(m.key_id.clone()))?;
        let sig_bytes = hex::decode(&b.signature)
            .ok()
            .and_then(|v| <[u8; 64]>::try_from(v).ok())
            .ok_or(Refusal::BadSignature)?;
        key.verify_strict(b.manifest.as_bytes(), &Signature::from_bytes(&sig_bytes))
            .map_err(|_| Refusal::BadSignature)?;
        if m.fleet_id != self.fleet_id {
            return Err(Refusal::OtherFleet(m.fleet_id, self.fleet_id.clone()));
        }
        let want = safelink_common::FEATURE_LAYOUT_VERSION;
        if m.feature_layout_version != want
            || m.feature_vector_version != FEATURE_VECTOR_VERSION
            || m.n_features != N_FEATURES
        {
            return Err(Refusal::OtherLayout {
                got: m.feature_layout_version,
                got_vector: m.feature_vector_version,
                got_n: m.n_features,
                want,
                want_vector: FEATURE_VECTOR_VERSION,
                want_n: N_FEATURES,
            });
        }
        let expires =
            parse_rfc3339(&m.expires).map_err(|e| Refusal::Malformed(format!("expires: {e}")))?;
        if expires <= now {
            return Err(Refusal::Expired(m.expires));
        }
        if let Some(h) = highest
            && m.version <= h
        {
            return Err(Refusal::NotNewer {
                got: m.version,
                highest: h,
            });
        }
        let bytes = b.model_bytes()?;
        let got = sha256_hex(&bytes);
        if got != m.sha256 || bytes.len() as u64 != m.size {
            return Err(Refusal::DigestMismatch {
                got,
                want: m.sha256,
            });
        }
        let model = crate::ann::model::load_bytes(&bytes, &format!("fleet v{}", m.version))
            .map_err(|e| Refusal::ModelRefused(e.to_string()))?;
        Ok(Verified {
            manifest: m,
            bytes,
            model,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/base.onnx")).unwrap()
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn bundle(k: &SigningKey, version: u64, f: impl FnOnce(&mut Manifest)) -> Vec<u8> {
        let model = base();
        let mut m = Manifest::for_model(
            "fleet-a",
            version,
            &model,
            &k.verifying_key(),
            time::Duration::hours(1),
        );
        f(&mut m);
        Bundle::sign(m, &model, k).to_bytes()
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let (k, other) = (key(1), key(2));
        let v = Verifier::new("fleet-a", &[k.verifying_key()]);
        let now = OffsetDateTime::now_utc();
        let ok = v.verify(&bundle(&k, 3, |_| {}), Some(2), now).unwrap();
        assert_eq!(ok.manifest.version, 3);
        assert_eq!(ok.bytes, base());
        let code = |raw: &[u8], h| v.verify(raw, h, now).unwrap_err().code();
        assert_eq!(code(b"{", None), "malformed");
        assert_eq!(code(&bundle(&other, 3, |_| {}), None), "unknown_key");
        assert_eq!(code(&bundle(&k, 3, |_| {}), Some(3)), "not_newer");
        assert_eq!(code(&bundle(&k, 2, |_| {}), Some(3)), "not_newer");
        assert_eq!(
            code(&bundle(&k, 3, |m| m.fleet_id = "fleet-b".into()), None),
            "other_fleet"
        );
        assert_eq!(
            code(&bundle(&k, 3, |m| m.feature_vector_version += 1), None),
            "other_layout"
        );
        assert_eq!(
            code(
                &bundle(&k, 3, |m| m.expires =
                    format_rfc3339(now - time::Duration::seconds(1))),
                None
            ),
            "expired"
        );
        // An altered manifest (version raised after signing).
        let mut b = Bundle::from_bytes(&bundle(&k, 3, |_| {})).unwrap();
        b.manifest = b.manifest.replace("\"version\":3", "\"version\":4");
        assert_eq!(code(&b.to_bytes(), None), "bad_signature");
        // An altered model (one byte flipped).
        let mut b = Bundle::from_bytes(&bundle(&k, 3, |_| {})).unwrap();
        let mut m = b.model_bytes().unwrap();
        m[100] ^= 1;
        b.model = base64::engine::general_purpose::STANDARD.encode(&m);
        assert_eq!(code(&b.to_bytes(), None), "digest_mismatch");
        // A key the attacker names as trusted but signs with another.
        let mut b = Bundle::from_bytes(&bundle(&other, 3, |_| {})).unwrap();
        b.manifest = b
            .manifest
            .replace(&key_id(&other.verifying_key()), &key_id(&k.verifying_key()));
        assert_eq!(code(&b.to_bytes(), None), "bad_signature");
        // The second trusted key (rotation) is accepted.
        let v2 = Verifier::new("fleet-a", &[k.verifying_key(), other.verifying_key()]);
        assert!(v2.verify(&bundle(&other, 3, |_| {}), None, now).is_ok());
    }

    #[test]
    fn keys_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let k = generate_key().unwrap();
        write_signing_key(&p, &k).unwrap();
        assert!(write_signing_key(&p, &k).is_err(), "never overwrites");
        assert_eq!(read_signing_key(&p).unwrap().to_bytes(), k.to_bytes());
        let pk = hex::encode(k.verifying_key().as_bytes());
        assert_eq!(parse_public_key(&pk).unwrap(), k.verifying_key());
    }
}
