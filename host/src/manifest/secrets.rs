//! `${VAR}` secrets: values taken from the environment or from a file, so that
//! the manifest itself holds none.

use std::path::Path;

/// Why a secret could not be resolved. The message never holds a secret value.
#[derive(Debug, thiserror::Error)]
pub(super) enum SecretError {
    #[error("environment variable '{0}' is not set")]
    Unset(String),
    #[error("cannot read secret file '{0}': {1}")]
    File(String, std::io::Error),
    #[error("unterminated '${{' in value")]
    Unterminated,
}

impl SecretError {
    pub(super) fn hint(&self) -> String {
        match self {
            SecretError::Unset(v) => format!("export {v}=... before running weir, or write the value as ${{file:PATH}} to read it from a file"),
            SecretError::File(..) => "create the file or correct its path; relative paths start at the manifest's folder".into(),
            SecretError::Unterminated => "close the reference with '}', or write '$$' for a literal '$'".into(),
        }
    }
}

/// Expands `${VAR}` (environment) and `${file:PATH}` (file contents, trailing
/// newline removed) in `value`; `$$` is a literal `$`.
pub(super) fn expand(value: &str, base: &Path) -> Result<String, SecretError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(SecretError::Unterminated)?;
            let name = &body[..end];
            if let Some(path) = name.strip_prefix("file:") {
                let text = std::fs::read_to_string(base.join(path))
                    .map_err(|e| SecretError::File(path.to_string(), e))?;
                out.push_str(text.trim_end_matches(['\n', '\r']));
            } else {
                out.push_str(
                    &std::env::var(name).map_err(|_| SecretError::Unset(name.to_string()))?,
                );
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_env_files_and_escapes() {
        std::env::set_var("WEIR_TEST_SECRET_A", "s3cret");
        let dir = std::env::temp_dir();
        let file = dir.join("weir-secret-test.txt");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(
            expand("Bearer ${WEIR_TEST_SECRET_A}", &dir).unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(
            expand("${file:weir-secret-test.txt}", &dir).unwrap(),
            "from-file"
        );
        assert_eq!(expand("cost $$5 and $x", &dir).unwrap(), "cost $5 and $x");
        assert!(
            matches!(expand("${WEIR_TEST_NOT_SET_EVER}", &dir), Err(SecretError::Unset(v)) if v == "WEIR_TEST_NOT_SET_EVER")
        );
        assert!(matches!(
            expand("${oops", &dir),
            Err(SecretError::Unterminated)
        ));
    }
}
