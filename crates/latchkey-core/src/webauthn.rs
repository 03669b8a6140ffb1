//! WebAuthn (API.md §10): the relying party, the options a browser is sent
//! to make or use a passkey, and the checks of what it answers, all done by
//! webauthn-rs's verification code (`webauthn-rs-core`). Nothing here
//! touches the store or HTTP: the service keeps a ceremony's [`Ceremony`]
//! in the store between its two halves.
//!
//! webauthn-rs's `Passkey` ceremonies offer ES256 and RS256 only and do not
//! ask for a resident key; latchkey takes EdDSA too, and logs in without a
//! username, which needs a discoverable credential. So the options are
//! built here with webauthn-rs's builder: those of its passkeys (user
//! verification required, no attestation, credProtect) plus a required
//! resident key and EdDSA. Its ceremony states are kept as JSON, which
//! is safe only because they stay in the store, spent at their first use.

use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::{
    AllowCredentials, AttestationConveyancePreference, AuthenticationResult, AuthenticationState,
    COSEAlgorithm, CredProtect, Credential, CredentialID, CredentialProtectionPolicy,
    PublicKeyCredential, RegisterPublicKeyCredential, RegistrationState,
    RequestAuthenticationExtensions, RequestRegistrationExtensions, UserVerificationPolicy,
};
use webauthn_rs_core::WebauthnCore;

use crate::crypto::B64;
use crate::error::ServiceError;
use crate::ids::UserId;

/// How long a ceremony may take, from its options to its answer; also the
/// timeout the browser is given.
pub const CEREMONY_TTL: Duration = Duration::from_secs(5 * 60);

/// The credential algorithms offered, preferred first.
const ALGORITHMS: [COSEAlgorithm; 3] = [
    COSEAlgorithm::ES256,
    COSEAlgorithm::EDDSA,
    COSEAlgorithm::RS256,
];

/// The credentials a login's options allow.
#[derive(Debug)]
pub enum Allowed {
    /// None named: any discoverable credential of this relying party.
    Discoverable,
    /// One user's.
    Credentials(Vec<Credential>),
    /// Ids no authenticator holds: options like a user's that nothing can
    /// answer, for a username that names nobody with a passkey.
    Decoys(Vec<Vec<u8>>),
}

/// Whose credential a login may end with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginOf {
    /// Any user's discoverable credential, whose user handle names its owner.
    Anyone,
    /// This user's (the login named them).
    User(String),
    /// Nobody's: the login named no user with a passkey.
    Nobody,
}

/// What finishing a ceremony needs, kept from its start.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ceremony {
    /// A passkey being added to this user's account.
    Registration {
        user_id: String,
        state: RegistrationState,
    },
    Login {
        of: LoginOf,
        state: AuthenticationState,
    },
}

impl Ceremony {
    pub fn to_json(&self) -> Result<String, ServiceError> {
        serde_json::to_string(self)
            .map_err(|e| ServiceError::Internal(format!("a WebAuthn state: {e}")))
    }

    pub fn from_json(text: &str) -> Result<Self, ServiceError> {
        serde_json::from_str(text)
            .map_err(|e| ServiceError::Internal(format!("a stored WebAuthn state: {e}")))
    }
}

/// The relying party: its id and the origins its ceremonies may come from.
#[derive(Debug, Clone)]
pub struct RelyingParty {
    core: WebauthnCore,
}

fn internal(e: WebauthnError) -> ServiceError {
    ServiceError::Internal(format!("WebAuthn: {e}"))
}

fn to_json<T: Serialize>(value: &T) -> Result<Value, ServiceError> {
    serde_json::to_value(value)
        .map_err(|e| ServiceError::Internal(format!("WebAuthn options: {e}")))
}

impl RelyingParty {
    /// `rp_id` is also the name shown to users; `origins` are exact
    /// (scheme, host and port), each already checked by the configuration.
    pub fn new(rp_id: &str, origins: &[String]) -> Result<Self, ServiceError> {
        let origins = origins
            .iter()
            .map(|o| Url::parse(o).map_err(|e| ServiceError::Internal(format!("origin {o}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            core: WebauthnCore::new_unsafe_experts_only(
                rp_id,
                rp_id,
                origins,
                CEREMONY_TTL,
                Some(false),
                Some(false),
            ),
        })
    }

    /// The options of a new passkey for `user_id` (its user handle), that
    /// none of the authenticators holding `exclude` (credential keys) may
    /// make; and the state that checks the answer.
    pub fn start_registration(
        &self,
        user_id: &UserId,
        username: &str,
        exclude: &[&str],
    ) -> Result<(Value, RegistrationState), ServiceError> {
        let handle = user_handle(user_id)?;
        let exclude = exclude
            .iter()
            .map(|key| credential_id(key).map(CredentialID::from))
            .collect::<Result<Vec<_>, _>>()?;
        let extensions = RequestRegistrationExtensions {
            // A passkey's key must not be usable without its PIN or
            // biometric; not enforced, as webauthn-rs found that many
            // authenticators fail rather than ignore it.
            cred_protect: Some(CredProtect {
                credential_protection_policy: CredentialProtectionPolicy::UserVerificationRequired,
                enforce_credential_protection_policy: Some(false),
            }),
            uvm: Some(true),
            cred_props: Some(true),
            min_pin_length: None,
            hmac_create_secret: None,
        };
        let builder = self
            .core
            .new_challenge_register_builder(&handle, username, username)
            .map_err(internal)?
            .attestation(AttestationConveyancePreference::None)
            .credential_algorithms(ALGORITHMS.to_vec())
            // Discoverable: a login without a username finds it.
            .require_resident_key(true)
            .authenticator_attachment(None)
            .user_verification_policy(UserVerificationPolicy::Required)
            .reject_synchronised_authenticators(false)
            .exclude_credentials(Some(exclude))
            .hints(None)
            .extensions(Some(extensions));
        let (options, state) = self
            .core
            .generate_challenge_register(builder)
            .map_err(internal)?;
        Ok((to_json(&options.public_key)?, state))
    }

    /// Checks a registration's answer against its state: the challenge,
    /// the origin, the relying party, user verification, an offered
    /// algorithm, the attestation (`none` accepted).
    pub fn finish_registration(
        &self,
        answer: &RegisterPublicKeyCredential,
        state: &RegistrationState,
    ) -> Result<Credential, WebauthnError> {
        self.core.register_credential(answer, state, None)
    }

    /// The options of a login with user verification, and its state (its
    /// challenge; no credentials).
    pub fn start_login(
        &self,
        allowed: Allowed,
    ) -> Result<(Value, AuthenticationState), ServiceError> {
        let (credentials, decoys) = match allowed {
            Allowed::Discoverable => (Vec::new(), None),
            Allowed::Credentials(credentials) => (credentials, None),
            Allowed::Decoys(ids) => (Vec::new(), Some(ids)),
        };
        let builder = self
            .core
            .new_challenge_authenticate_builder(credentials, Some(UserVerificationPolicy::Required))
            .map_err(internal)?
            .extensions(Some(RequestAuthenticationExtensions {
                appid: None,
                uvm: Some(true),
                hmac_get_secret: None,
            }))
            // A synced passkey provider may turn backup eligibility on later.
            .allow_backup_eligible_upgrade(true)
            .hints(None);
        let (mut options, mut state) = self
            .core
            .generate_challenge_authenticate(builder)
            .map_err(internal)?;
        let allowed = &mut options.public_key.allow_credentials;
        if let Some(ids) = decoys {
            *allowed = ids
                .into_iter()
                .map(|id| AllowCredentials {
                    type_: "public-key".into(),
                    id: id.into(),
                    transports: None,
                })
                .collect();
        }
        // Without transports a user's list looks like a decoy's.
        for credential in allowed.iter_mut() {
            credential.transports = None;
        }
        // `finish_login` names the one credential that answered; the list
        // would only swell the sealed state.
        state.set_allowed_credentials(Vec::new());
        Ok((to_json(&options.public_key)?, state))
    }

    /// Checks a login's answer, signed by `credential` (as the store has it
    /// now, with its current counter), against the login's state: the
    /// challenge, the origin, the relying party, user verification, the
    /// signature, and a counter that moved on when the authenticator
    /// keeps one (`CredentialPossibleCompromise` when it did not).
    pub fn finish_login(
        &self,
        answer: &PublicKeyCredential,
        mut state: AuthenticationState,
        credential: Credential,
    ) -> Result<AuthenticationResult, WebauthnError> {
        state.set_allowed_credentials(vec![credential]);
        self.core.authenticate_credential(answer, &state)
    }
}

/// A credential after a login that `result` checked: its counter and
/// backup flags as the authenticator reported them (webauthn-rs's
/// `Passkey::update_credential`).
pub fn after_login(mut credential: Credential, result: &AuthenticationResult) -> Credential {
    if result.counter() > credential.counter {
        credential.counter = result.counter();
    }
    credential.backup_state = result.backup_state();
    // Eligibility only ever turns on.
    if result.backup_eligible() {
        credential.backup_eligible = true;
    }
    credential
}

/// A user's WebAuthn user handle: the 16 bytes of their id (a UUID).
pub fn user_handle(user_id: &UserId) -> Result<[u8; 16], ServiceError> {
    uuid::Uuid::parse_str(user_id.as_str())
        .map(|id| id.into_bytes())
        .map_err(|_| ServiceError::Internal(format!("user id {user_id} is not a UUID")))
}

/// How the store keys a credential: its id, base64url.
pub fn credential_key(credential_id: &[u8]) -> String {
    B64.encode(credential_id)
}

fn credential_id(key: &str) -> Result<Vec<u8>, ServiceError> {
    B64.decode(key)
        .map_err(|_| ServiceError::Internal(format!("stored credential id {key} is not base64url")))
}

/// A credential as the store keeps it.
pub fn credential_json(credential: &Credential) -> Result<String, ServiceError> {
    serde_json::to_string(credential)
        .map_err(|e| ServiceError::Internal(format!("a WebAuthn credential: {e}")))
}

/// The inverse of [`credential_json`], with the counter of the store's
/// `sign_count` column (the one the store compares).
pub fn stored_credential(text: &str, sign_count: u32) -> Result<Credential, ServiceError> {
    let mut credential: Credential = serde_json::from_str(text)
        .map_err(|e| ServiceError::Internal(format!("a stored WebAuthn credential: {e}")))?;
    credential.counter = sign_count;
    Ok(credential)
}

/// A registration's `credential` member (`PublicKeyCredential.toJSON()`).
pub fn registration_answer(credential: Value) -> Result<RegisterPublicKeyCredential, ServiceError> {
    serde_json::from_value(credential).map_err(|e| {
        ServiceError::invalid_request(format!("credential is not a WebAuthn registration: {e}"))
    })
}

/// A login's `credential` member (`PublicKeyCredential.toJSON()`).
pub fn login_answer(credential: Value) -> Result<PublicKeyCredential, ServiceError> {
    serde_json::from_value(credential).map_err(|e| {
        ServiceError::invalid_request(format!("credential is not a WebAuthn assertion: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party() -> RelyingParty {
        RelyingParty::new("example.com", &["https://login.example.com".to_owned()]).unwrap()
    }

    #[test]
    fn registration_asks_for_a_verified_discoverable_credential() {
        let user = UserId::random();
        let excluded = credential_key(b"an older passkey");
        let (options, state) = party()
            .start_registration(&user, "alice", &[excluded.as_str()])
            .unwrap();
        assert_eq!(options["rp"]["id"], "example.com");
        let handle = B64.decode(options["user"]["id"].as_str().unwrap()).unwrap();
        assert_eq!(handle, user_handle(&user).unwrap());
        assert_eq!(options["user"]["name"], "alice");
        let selection = &options["authenticatorSelection"];
        assert_eq!(selection["residentKey"], "required");
        assert_eq!(selection["requireResidentKey"], true);
        assert_eq!(selection["userVerification"], "required");
        assert_eq!(options["attestation"], "none");
        let algs: Vec<i64> = options["pubKeyCredParams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["alg"].as_i64().unwrap())
            .collect();
        assert_eq!(algs, [-7, -8, -257]);
        assert_eq!(options["excludeCredentials"][0]["id"], excluded.as_str());
        assert_eq!(options["timeout"], 300_000);
        // The challenge is 32 random bytes, base64url, and the state holds it.
        let challenge = options["challenge"].as_str().unwrap();
        assert_eq!(B64.decode(challenge).unwrap().len(), 32);
        let kept = Ceremony::Registration {
            user_id: user.to_string(),
            state,
        }
        .to_json()
        .unwrap();
        assert!(kept.contains(challenge), "{kept}");
        assert!(matches!(
            Ceremony::from_json(&kept).unwrap(),
            Ceremony::Registration { user_id, .. } if user_id == user.as_str()
        ));
    }

    #[test]
    fn a_decoy_login_looks_like_a_users() {
        let (options, _) = party()
            .start_login(Allowed::Decoys(vec![vec![7; 32]]))
            .unwrap();
        assert_eq!(options["rpId"], "example.com");
        assert_eq!(options["userVerification"], "required");
        assert_eq!(
            options["allowCredentials"],
            serde_json::json!([{ "type": "public-key", "id": credential_key(&[7; 32]) }])
        );
        let (discoverable, _) = party().start_login(Allowed::Discoverable).unwrap();
        assert_eq!(discoverable["allowCredentials"], serde_json::json!([]));
        assert_ne!(discoverable["challenge"], options["challenge"]);
    }

    #[test]
    fn answers_that_are_not_webauthn_are_bad_requests() {
        for bad in [
            serde_json::json!("a string"),
            serde_json::json!({}),
            serde_json::json!({ "id": 1, "rawId": "!!", "response": {}, "type": "public-key" }),
        ] {
            assert!(matches!(
                registration_answer(bad.clone()),
                Err(ServiceError::InvalidRequest(_))
            ));
            assert!(matches!(
                login_answer(bad),
                Err(ServiceError::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn a_stored_credential_reads_back_with_the_columns_counter() {
        use webauthn_rs_core::proto::{
            AttestationFormat, AttestationMetadata, COSEEC2Key, COSEKey, COSEKeyType, ECDSACurve,
            ParsedAttestation, ParsedAttestationData, RegisteredExtensions,
        };
        let credential = Credential {
            cred_id: vec![1, 2, 3].into(),
            cred: COSEKey {
                type_: COSEAlgorithm::ES256,
                key: COSEKeyType::EC_EC2(COSEEC2Key {
                    curve: ECDSACurve::SECP256R1,
                    x: vec![4; 32].into(),
                    y: vec![5; 32].into(),
                }),
            },
            counter: 9,
            transports: None,
            user_verified: true,
            backup_eligible: false,
            backup_state: false,
            registration_policy: UserVerificationPolicy::Required,
            extensions: RegisteredExtensions::none(),
            attestation: ParsedAttestation {
                data: ParsedAttestationData::None,
                metadata: AttestationMetadata::None,
            },
            attestation_format: AttestationFormat::None,
        };
        let text = credential_json(&credential).unwrap();
        let read = stored_credential(&text, 12).unwrap();
        assert_eq!(read.counter, 12);
        assert_eq!(read.cred_id, credential.cred_id);
        assert_eq!(read.cred, credential.cred);
        // What the store holds and cannot read is the operator's problem.
        assert!(matches!(
            stored_credential("{}", 3),
            Err(ServiceError::Internal(_))
        ));
        assert!(matches!(
            credential_id("not base64!"),
            Err(ServiceError::Internal(_))
        ));
        assert!(user_handle(&UserId::from("not-a-uuid")).is_err());
    }
}
