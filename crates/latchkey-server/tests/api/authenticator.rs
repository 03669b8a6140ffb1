//! A software WebAuthn authenticator and client, for the passkey tests: it
//! answers the options latchkey sends as a browser with a platform
//! authenticator would (`PublicKeyCredential.toJSON()`), with discoverable
//! credentials, user verification, attestation `none`, and a signature
//! counter when asked for one. The keys and signatures are aws-lc-rs's.
//! (webauthn-authenticator-rs's soft tokens refuse resident keys, which
//! latchkey's registration requires.)

use std::collections::BTreeMap;

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    RSA_PKCS1_SHA256,
};
use base64::Engine;
use serde_cbor_2::Value as Cbor;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    B64.decode(text).unwrap()
}

/// The key algorithms an authenticator may make (COSE numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Es256,
    EdDsa,
    Rs256,
}

impl Alg {
    fn cose(self) -> i64 {
        match self {
            Alg::Es256 => -7,
            Alg::EdDsa => -8,
            Alg::Rs256 => -257,
        }
    }
}

/// One discoverable credential the authenticator holds.
#[derive(Clone)]
pub struct Credential {
    pub id: Vec<u8>,
    pub rp_id: String,
    pub user_handle: Vec<u8>,
    alg: Alg,
    /// PKCS#8, so that a credential can be copied (a cloned authenticator).
    pkcs8: Vec<u8>,
    pub sign_count: u32,
}

impl Credential {
    fn public_cose(&self) -> Cbor {
        let int = |n: i128| Cbor::Integer(n);
        let mut key = BTreeMap::new();
        key.insert(int(3), int(i128::from(self.alg.cose())));
        match self.alg {
            Alg::Es256 => {
                let pair =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.pkcs8).unwrap();
                // Uncompressed point: 0x04 || x || y.
                let point = pair.public_key().as_ref();
                key.insert(int(1), int(2));
                key.insert(int(-1), int(1));
                key.insert(int(-2), Cbor::Bytes(point[1..33].to_vec()));
                key.insert(int(-3), Cbor::Bytes(point[33..65].to_vec()));
            }
            Alg::EdDsa => {
                let pair = Ed25519KeyPair::from_pkcs8(&self.pkcs8).unwrap();
                key.insert(int(1), int(1));
                key.insert(int(-1), int(6));
                key.insert(int(-2), Cbor::Bytes(pair.public_key().as_ref().to_vec()));
            }
            Alg::Rs256 => {
                let pair = RsaKeyPair::from_pkcs8(&self.pkcs8).unwrap();
                let public = pair.public_key();
                key.insert(int(1), int(3));
                key.insert(
                    int(-1),
                    Cbor::Bytes(public.modulus().big_endian_without_leading_zero().to_vec()),
                );
                key.insert(
                    int(-2),
                    Cbor::Bytes(public.exponent().big_endian_without_leading_zero().to_vec()),
                );
            }
        }
        Cbor::Map(key)
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self.alg {
            Alg::Es256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.pkcs8)
                .unwrap()
                .sign(&rng, message)
                .unwrap()
                .as_ref()
                .to_vec(),
            Alg::EdDsa => Ed25519KeyPair::from_pkcs8(&self.pkcs8)
                .unwrap()
                .sign(message)
                .as_ref()
                .to_vec(),
            Alg::Rs256 => {
                let pair = RsaKeyPair::from_pkcs8(&self.pkcs8).unwrap();
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .unwrap();
                signature
            }
        }
    }
}

/// Authenticator data flags (WebAuthn §6.1).
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;

/// A platform authenticator with its browser, on one origin.
#[derive(Clone)]
pub struct Authenticator {
    pub origin: String,
    pub alg: Alg,
    /// Whether it verifies its user (a PIN, a biometric): the UV flag.
    pub verifies_user: bool,
    /// Whether it keeps a signature counter (else it always says 0).
    pub counts: bool,
    pub credentials: Vec<Credential>,
}

impl Authenticator {
    pub fn new(origin: &str, alg: Alg) -> Self {
        Self {
            origin: origin.to_owned(),
            alg,
            verifies_user: true,
            counts: true,
            credentials: Vec::new(),
        }
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .unwrap()
    }

    /// Authenticator data up to the counter: the rp id's hash, the flags
    /// (user presence, verification when it verifies, and `more`), the count.
    fn auth_data(&self, credential: &Credential, more: u8) -> Vec<u8> {
        let verified = if self.verifies_user { UV } else { 0 };
        let mut data = digest(&SHA256, credential.rp_id.as_bytes())
            .as_ref()
            .to_vec();
        data.push(UP | verified | more);
        data.extend_from_slice(&credential.sign_count.to_be_bytes());
        data
    }

    /// `navigator.credentials.create({publicKey: options})`: a new
    /// discoverable credential, answered as `toJSON()` writes it; `None`
    /// when the options exclude one this authenticator holds.
    pub fn create(&mut self, options: &Value) -> Option<Value> {
        let rp_id = options["rp"]["id"].as_str().unwrap().to_owned();
        let excluded: Vec<Vec<u8>> = options["excludeCredentials"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|c| unb64(c["id"].as_str().unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        if self.credentials.iter().any(|c| excluded.contains(&c.id)) {
            return None;
        }
        let offered: Vec<i64> = options["pubKeyCredParams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["alg"].as_i64().unwrap())
            .collect();
        assert!(offered.contains(&self.alg.cose()), "{offered:?}");
        let rng = SystemRandom::new();
        let pkcs8 = match self.alg {
            Alg::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .unwrap()
                .as_ref()
                .to_vec(),
            Alg::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
                .unwrap()
                .as_ref()
                .to_vec(),
            Alg::Rs256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .unwrap()
                .as_der()
                .unwrap()
                .as_ref()
                .to_vec(),
        };
        let mut id = vec![0; 32];
        rng.fill(&mut id).unwrap();
        let credential = Credential {
            id,
            rp_id,
            user_handle: unb64(options["user"]["id"].as_str().unwrap()),
            alg: self.alg,
            pkcs8,
            sign_count: 0,
        };
        let answer = self.attest(&credential, options["challenge"].as_str().unwrap());
        self.credentials.push(credential);
        Some(answer)
    }

    /// The registration answer of `credential` to `challenge`.
    pub fn attest(&self, credential: &Credential, challenge: &str) -> Value {
        let client_data = self.client_data("webauthn.create", challenge);
        let mut auth_data = self.auth_data(credential, AT);
        auth_data.extend_from_slice(&[0; 16]); // AAGUID: none.
        auth_data.extend_from_slice(&(credential.id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&credential.id);
        auth_data.extend(serde_cbor_2::to_vec(&credential.public_cose()).unwrap());
        let attestation = Cbor::Map(BTreeMap::from([
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(BTreeMap::new())),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
        ]));
        json!({
            "id": b64(&credential.id),
            "rawId": b64(&credential.id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "response": {
                "clientDataJSON": b64(&client_data),
                "attestationObject": b64(&serde_cbor_2::to_vec(&attestation).unwrap()),
                "transports": ["internal"],
            },
            "clientExtensionResults": { "credProps": { "rk": true } },
        })
    }

    /// `navigator.credentials.get({publicKey: options})` with the first
    /// credential of the relying party the options allow (any of it when
    /// they list none); `None` when it holds no such credential.
    pub fn get(&mut self, options: &Value) -> Option<Value> {
        let rp_id = options["rpId"].as_str().unwrap();
        let allowed: Vec<Vec<u8>> = options["allowCredentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| unb64(c["id"].as_str().unwrap()))
            .collect();
        let counts = self.counts;
        let credential = self
            .credentials
            .iter_mut()
            .find(|c| c.rp_id == rp_id && (allowed.is_empty() || allowed.contains(&c.id)))?;
        if counts {
            credential.sign_count += 1;
        }
        let credential = credential.clone();
        Some(self.assert(&credential, options["challenge"].as_str().unwrap()))
    }

    /// The login answer of `credential` to `challenge`, with its user handle.
    pub fn assert(&self, credential: &Credential, challenge: &str) -> Value {
        let client_data = self.client_data("webauthn.get", challenge);
        let auth_data = self.auth_data(credential, 0);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(digest(&SHA256, &client_data).as_ref());
        json!({
            "id": b64(&credential.id),
            "rawId": b64(&credential.id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "response": {
                "clientDataJSON": b64(&client_data),
                "authenticatorData": b64(&auth_data),
                "signature": b64(&credential.sign(&signed)),
                "userHandle": b64(&credential.user_handle),
            },
            "clientExtensionResults": {},
        })
    }
}
