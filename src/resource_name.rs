//! Google resource names of the form `projects/P/locations/L/<collection>/ID`, as Managed
//! Kafka names clusters and schema registries: the shape and the project and location checked
//! once, the id left to the caller (each collection has its own id rule).

/// Splits `text` into project, location and id if it is `projects/P/locations/L/<collection>/ID`
/// with a plausible project and location; otherwise says why not (`parts_rule` when the
/// keywords are wrong).
pub(crate) fn split<'a>(
    text: &'a str,
    collection: &str,
    parts_rule: &'static str,
) -> Result<[&'a str; 3], &'static str> {
    let parts: Vec<&str> = text.split('/').collect();
    let [projects, project, locations, location, keyword, id] = parts.as_slice() else {
        return Err("it must have six parts separated by `/`");
    };
    if (*projects, *locations, *keyword) != ("projects", "locations", collection) {
        return Err(parts_rule);
    }
    if !id_ok(project) {
        return Err("the project id is empty or has characters ids cannot have");
    }
    if !id_ok(location) {
        return Err("the location is empty or has characters regions cannot have");
    }
    Ok([project, location, id])
}

/// Resource ids: letters, digits, `-`, `_`, `.` and `:` (domain-scoped projects, e.g.
/// `example.com:p`).
pub(crate) fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}
