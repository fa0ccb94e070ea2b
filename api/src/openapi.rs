//! What the servers' validation demands of their parameters, written into their OpenAPI
//! documents, where client generators and fuzzers read it: one rule per parameter name, applied
//! to every operation, so a route added later inherits it.

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::ArrayItems;
use utoipa::openapi::{OpenApi, RefOr, Schema};

/// Every operation of `openapi`, to document something on all of them.
pub(crate) fn operations_mut(openapi: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
        ]
        .into_iter()
        .flatten()
    })
}

/// Sets the `pattern` of every parameter named in `patterns` (name, ECMA-262 pattern) on every
/// operation of `openapi`; for an array parameter (a repeated query parameter), its items'.
pub fn document_parameter_patterns(openapi: &mut OpenApi, patterns: &[(&str, &str)]) {
    for operation in operations_mut(openapi) {
        for parameter in operation.parameters.iter_mut().flatten() {
            let RefOr::T(parameter) = parameter else {
                continue;
            };
            let Some((_, pattern)) = patterns.iter().find(|(name, _)| *name == parameter.name)
            else {
                continue;
            };
            let schema = match &mut parameter.schema {
                Some(RefOr::T(Schema::Array(array))) => match &mut array.items {
                    ArrayItems::RefOrSchema(items) => Some(items.as_mut()),
                    ArrayItems::False => None,
                },
                other => other.as_mut(),
            };
            if let Some(RefOr::T(Schema::Object(object))) = schema {
                object.pattern = Some((*pattern).to_owned());
            }
        }
    }
}

/// The strings of up to `max_len` characters from `alphabet`, and `extra`, on which a pattern
/// (`matches`) and the check it documents (`passes`) disagree: for the tests that hold each
/// server's patterns and checks together.
pub fn disagreements(
    alphabet: &str,
    max_len: usize,
    extra: &[String],
    matches: impl Fn(&str) -> bool,
    passes: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut all = vec![String::new()];
    let mut frontier = vec![String::new()];
    for _ in 0..max_len {
        frontier = frontier
            .iter()
            .flat_map(|prefix| alphabet.chars().map(move |c| format!("{prefix}{c}")))
            .collect();
        all.extend(frontier.iter().cloned());
    }
    all.extend(extra.iter().cloned());
    all.into_iter()
        .filter(|s| matches(s) != passes(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(utoipa::OpenApi)]
    #[openapi(paths(get_thing))]
    struct Doc;

    #[utoipa::path(get, path = "/things/{name}",
        params(("name" = String, Path), ("tag" = Option<Vec<String>>, Query), ("other" = String, Query)),
        responses((status = 200)))]
    #[allow(dead_code)]
    fn get_thing() {}

    #[test]
    fn named_parameters_get_their_pattern_and_arrays_their_items() {
        let mut doc = <Doc as utoipa::OpenApi>::openapi();
        document_parameter_patterns(&mut doc, &[("name", "^[a-z]+$"), ("tag", "^[0-9]$")]);
        let json = serde_json::to_value(&doc).unwrap();
        let parameters = &json["paths"]["/things/{name}"]["get"]["parameters"];
        assert_eq!(parameters[0]["schema"]["pattern"], "^[a-z]+$");
        assert_eq!(parameters[1]["schema"]["items"]["pattern"], "^[0-9]$");
        assert!(parameters[2]["schema"].get("pattern").is_none());
    }

    #[test]
    fn disagreements_are_found() {
        let starts_with_a = |s: &str| s.starts_with('a');
        let two_long = |s: &str| s.len() == 2;
        let found = disagreements("ab", 2, &["ccc".into()], starts_with_a, two_long);
        assert_eq!(found, ["a", "ba", "bb"]);
    }
}
