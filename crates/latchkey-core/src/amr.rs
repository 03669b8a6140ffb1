//! How a login was made: the Authentication Method Reference values of
//! RFC 8176 that a session keeps and its access tokens carry as `amr`.

/// A password.
pub const PWD: &str = "pwd";
/// A one-time password (TOTP).
pub const OTP: &str = "otp";
/// More than one factor: a recovery code after a password.
pub const MFA: &str = "mfa";
/// A hardware-bound key (a passkey).
pub const HWK: &str = "hwk";
/// The user was verified by the authenticator (a passkey's PIN or biometric).
pub const USER: &str = "user";

/// The values as the stores keep them: space-separated, in order.
pub fn join(amr: &[String]) -> String {
    amr.join(" ")
}

/// The inverse of [`join`].
pub fn split(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// An owned list from constants: `amr::of(&[amr::PWD, amr::OTP])`.
pub fn of(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_split_are_inverse() {
        for amr in [of(&[PWD]), of(&[PWD, OTP]), of(&[HWK, USER]), Vec::new()] {
            assert_eq!(split(&join(&amr)), amr);
        }
    }
}
