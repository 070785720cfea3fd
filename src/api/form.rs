//! Form parameters (`application/x-www-form-urlencoded`) from a body and a query string.
//! Strict: invalid percent-escapes' UTF-8 and repeated parameters are client errors.

use percent_encoding::percent_decode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("parameters are not valid UTF-8")]
    InvalidUtf8,
    #[error("parameter {0} is given more than once")]
    Duplicate(&'static str),
}

/// Parsed pairs of one source (body or query).
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

fn decode(part: &[u8]) -> Result<String, FormError> {
    let plus_as_space: Vec<u8> = part
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&plus_as_space)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| FormError::InvalidUtf8)
}

impl Form {
    pub fn parse(input: &[u8]) -> Result<Form, FormError> {
        let mut pairs = Vec::new();
        for part in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match part.iter().position(|&b| b == b'=') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, &[][..]),
            };
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(Form(pairs))
    }

    /// The value of the first of `names` present; a name given twice is an error.
    fn lookup(&self, canonical: &'static str, names: &[&str]) -> Result<Option<&str>, FormError> {
        let mut found = self.0.iter().filter(|(n, _)| names.contains(&n.as_str()));
        let first = found.next();
        if found.next().is_some() {
            return Err(FormError::Duplicate(canonical));
        }
        Ok(first.map(|(_, v)| v.as_str()))
    }
}

/// The parameters of one request: the body wins over the query string.
#[derive(Debug, Default)]
pub struct Params {
    pub body: Form,
    pub query: Form,
}

impl Params {
    pub fn parse(body: &[u8], query: Option<&str>) -> Result<Params, FormError> {
        Ok(Params {
            body: Form::parse(body)?,
            query: Form::parse(query.unwrap_or("").as_bytes())?,
        })
    }

    /// A non-empty parameter under any of `names` (the first is the canonical one, used in errors).
    pub fn get(&self, names: &[&'static str]) -> Result<Option<&str>, FormError> {
        let canonical = names[0];
        let value = match self.body.lookup(canonical, names)? {
            Some(v) => Some(v),
            None => self.query.lookup(canonical, names)?,
        };
        Ok(value.filter(|v| !v.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_wins_over_query_and_plus_is_space() {
        let p = Params::parse(b"user=a+b&x=%2B", Some("user=q&y=1")).unwrap();
        assert_eq!(p.get(&["user"]).unwrap(), Some("a b"));
        assert_eq!(p.get(&["x"]).unwrap(), Some("+"));
        assert_eq!(p.get(&["y"]).unwrap(), Some("1"));
        assert_eq!(p.get(&["z"]).unwrap(), None);
    }

    #[test]
    fn aliases_empty_values_and_duplicates() {
        let p = Params::parse(b"gwos_api_token=t&empty=", None).unwrap();
        assert_eq!(
            p.get(&["gwos-api-token", "gwos_api_token"]).unwrap(),
            Some("t")
        );
        assert_eq!(p.get(&["empty"]).unwrap(), None);
        let p = Params::parse(b"a=1&a=2", None).unwrap();
        assert_eq!(p.get(&["a"]), Err(FormError::Duplicate("a")));
        let p = Params::parse(b"gwos-api-token=1&gwos_api_token=2", None).unwrap();
        assert!(p.get(&["gwos-api-token", "gwos_api_token"]).is_err());
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert_eq!(
            Form::parse(b"user=%ff%fe").unwrap_err(),
            FormError::InvalidUtf8
        );
        assert!(
            Form::parse(b"a=%zz").is_ok(),
            "a stray % is kept literally, as browsers do"
        );
    }
}
