//! The mails' templates: a subject, a plain-text body and an HTML body per
//! kind of mail, with `{{name}}` placeholders. Built-in defaults are
//! compiled in; an operator's `mail_templates` directory replaces any of
//! them file by file. Values are HTML-escaped in the HTML body; a
//! placeholder that names no variable is refused when the templates load,
//! not when a mail is sent.

use std::collections::BTreeMap;
use std::path::Path;

/// The kinds of mail latchkey sends; each is three files,
/// `<name>.subject.txt`, `<name>.txt` and `<name>.html`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MailKind {
    PasswordReset,
    VerifyEmail,
    /// `latchkey mail test`.
    Test,
}

impl MailKind {
    pub const ALL: [MailKind; 3] = [Self::PasswordReset, Self::VerifyEmail, Self::Test];

    pub fn name(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::VerifyEmail => "verify_email",
            Self::Test => "test",
        }
    }

    fn defaults(self) -> [&'static str; 3] {
        match self {
            Self::PasswordReset => [
                include_str!("templates/password_reset.subject.txt"),
                include_str!("templates/password_reset.txt"),
                include_str!("templates/password_reset.html"),
            ],
            Self::VerifyEmail => [
                include_str!("templates/verify_email.subject.txt"),
                include_str!("templates/verify_email.txt"),
                include_str!("templates/verify_email.html"),
            ],
            Self::Test => [
                include_str!("templates/test.subject.txt"),
                include_str!("templates/test.txt"),
                include_str!("templates/test.html"),
            ],
        }
    }
}

/// The variables every template may use (those a mail has no value for,
/// such as `link` in the test mail, are empty).
pub const TEMPLATE_VARIABLES: &[&str] =
    &["username", "email", "link", "token", "expires_in", "issuer"];

/// The three parts of a mail, rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A template that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct TemplateError {
    pub file: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(&'static str),
}

#[derive(Debug, Clone)]
struct Template(Vec<Piece>);

impl Template {
    fn parse(file: &str, source: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            pieces.push(Piece::Text(rest[..open].to_owned()));
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| TemplateError {
                file: file.to_owned(),
                message: "a {{ without its }}".into(),
            })?;
            let name = after[..close].trim();
            let var = TEMPLATE_VARIABLES
                .iter()
                .find(|v| **v == name)
                .ok_or_else(|| TemplateError {
                    file: file.to_owned(),
                    message: format!(
                        "unknown variable {{{{{name}}}}} (known: {})",
                        TEMPLATE_VARIABLES.join(", ")
                    ),
                })?;
            pieces.push(Piece::Var(var));
            rest = &after[close + 2..];
        }
        pieces.push(Piece::Text(rest.to_owned()));
        Ok(Self(pieces))
    }

    fn render(&self, vars: &BTreeMap<&str, String>, escape: bool) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(name) => {
                    let value = vars.get(name).map(String::as_str).unwrap_or_default();
                    if escape {
                        html_escape(value, &mut out);
                    } else {
                        out.push_str(value);
                    }
                }
            }
        }
        out
    }
}

fn html_escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Every kind's three templates, parsed.
#[derive(Debug, Clone)]
pub struct Templates {
    kinds: BTreeMap<MailKind, [Template; 3]>,
}

const PARTS: [&str; 3] = ["subject.txt", "txt", "html"];

impl Templates {
    /// The built-in templates.
    pub fn builtin() -> Result<Self, TemplateError> {
        Self::load(None)
    }

    /// The built-in templates, each replaced by its file in `dir` when
    /// there is one.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut kinds = BTreeMap::new();
        for kind in MailKind::ALL {
            let defaults = kind.defaults();
            let mut parsed = Vec::with_capacity(3);
            for (part, default) in PARTS.iter().zip(defaults) {
                let name = format!("{}.{part}", kind.name());
                let source = match dir.map(|d| d.join(&name)) {
                    Some(path) if path.exists() => {
                        std::fs::read_to_string(&path).map_err(|e| TemplateError {
                            file: path.display().to_string(),
                            message: format!("cannot read: {e}"),
                        })?
                    }
                    _ => default.to_owned(),
                };
                parsed.push(Template::parse(&name, &source)?);
            }
            let [subject, text, html]: [Template; 3] =
                parsed.try_into().map_err(|_| TemplateError {
                    file: kind.name().into(),
                    message: "three parts".into(),
                })?;
            kinds.insert(kind, [subject, text, html]);
        }
        Ok(Self { kinds })
    }

    /// A mail of `kind` with these values.
    pub fn render(&self, kind: MailKind, vars: &BTreeMap<&str, String>) -> Rendered {
        let Some([subject, text, html]) = self.kinds.get(&kind) else {
            return Rendered::default();
        };
        // A subject is one header line, whatever the template or values hold.
        let subject = subject
            .render(vars, false)
            .split(['\r', '\n'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Rendered {
            subject,
            text: text.render(vars, false),
            html: html.render(vars, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("username", "<b>bob</b> & co".to_owned()),
            ("link", "https://app/reset?token=abc".to_owned()),
            ("token", "abc".to_owned()),
            ("expires_in", "30 minutes".to_owned()),
            ("issuer", "https://id.example".to_owned()),
        ])
    }

    #[test]
    fn the_builtin_templates_render_every_value_and_escape_html() {
        let t = Templates::builtin().unwrap();
        let mail = t.render(MailKind::PasswordReset, &vars());
        assert!(!mail.subject.contains('\n'));
        assert!(
            mail.text.contains("https://app/reset?token=abc"),
            "{}",
            mail.text
        );
        assert!(mail.text.contains("abc"));
        assert!(mail.text.contains("<b>bob</b> & co"));
        assert!(
            mail.html.contains("&lt;b&gt;bob&lt;/b&gt; &amp; co"),
            "{}",
            mail.html
        );
        assert!(!mail.html.contains("<b>bob"));
        assert!(mail.html.contains("https://app/reset?token=abc"));
        let verify = t.render(MailKind::VerifyEmail, &vars());
        assert!(verify.text.contains("https://app/reset?token=abc"));
    }

    #[test]
    fn a_directory_replaces_file_by_file_and_unknown_names_are_refused() {
        let dir = std::env::temp_dir().join(format!("latchkey-tpl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("password_reset.subject.txt"),
            "Reset for {{ username }}\n",
        )
        .unwrap();
        let t = Templates::load(Some(&dir)).unwrap();
        let mail = t.render(MailKind::PasswordReset, &vars());
        assert_eq!(mail.subject, "Reset for <b>bob</b> & co");
        assert!(mail.text.contains("abc"));
        std::fs::write(dir.join("verify_email.html"), "{{ password }}").unwrap();
        let e = Templates::load(Some(&dir)).unwrap_err();
        assert!(e.to_string().contains("verify_email.html"), "{e}");
        assert!(e.to_string().contains("password"), "{e}");
        std::fs::write(dir.join("verify_email.html"), "{{ link ").unwrap();
        assert!(Templates::load(Some(&dir)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
